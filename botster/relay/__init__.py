"""The relay: ``botster relay``, the server hubs register with and browsers find them through.

Modules, each owning one thing:

* ``server``: the aiohttp app (REST, ``/cable``, the web app) and ``start_relay``;
* ``cable``: the ActionCable protocol and the two channels (``HubCommandChannel``,
  ``HubSignalingChannel``);
* ``store``: hub records and token hashes, in SQLite under ``--data`` or in Redis;
* ``broker``: stream pub/sub, in-process or through Redis (one subscription per process);
* ``tokens``: hub token minting and hashing;
* ``settings``: ``relay.json`` in the data directory, ICE servers, rate limits.

Nothing here imports redis until ``--redis`` is given, so the hub's embedded relay costs only
aiohttp, which the hub already has. The relay forwards signalling envelopes opaquely and never
logs or stores them (docs/relay.md says what it can and cannot read).
"""
