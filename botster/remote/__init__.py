"""Remote access: the hub's end of end-to-end encrypted WebRTC (docs/protocol.md "WebRTC
carrier", docs/security.md "Pairing and admission").

* ``bundle`` — the 161-byte key bundle, the pairing URL and its QR code (pure);
* ``olm`` — the Olm account, inbound sessions, admission, signalling envelopes;
* ``state`` — one hub's remote state (``remote_for(hub)``);
* ``peer`` — WebRTC peers and the data-channel carrier of the client protocol (imports aiortc
  when the first peer arrives);
* ``test_browser`` — a Python browser for tests and benchmarks.
"""
