"""A hub-side Olm peer on Python vodozemac, driven over stdin/stdout JSON lines.

The Vitest cross-tests start it to check the browser's Olm (web/src/olm.ts) against the
reference implementation in both directions. One request per line, one answer per line:
``{"op": ..., ...}`` → ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``.
Bytes travel as standard base64.
"""

import base64
import json
import sys

import vodozemac as v


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


class Peer:
    def __init__(self) -> None:
        self.account = v.Account()
        self.session: v.Session | None = None

    def bundle(self, req: dict) -> dict:
        self.account.generate_one_time_keys(1)
        otk = list(self.account.one_time_keys.values())[-1]
        self.account.mark_keys_as_published()
        head = (
            bytes([6])
            + self.account.curve25519_key.to_bytes()
            + unb64(self.account.ed25519_key.to_base64())
            + otk.to_bytes()
        )
        sig = unb64(self.account.sign(head).to_base64())
        if req.get("corrupt"):
            sig = bytes([sig[0] ^ 1]) + sig[1:]
        return {"bundle": b64(head + sig)}

    def decrypt(self, req: dict) -> dict:
        kind, body = req["type"], unb64(req["body"])
        msg = v.AnyOlmMessage.from_parts(kind, body)
        if kind == 0 and self.session is None:
            pre = msg.to_pre_key()
            sender = v.Curve25519PublicKey.from_bytes(unb64(req["sender"]))
            self.session, plaintext = self.account.create_inbound_session(sender, pre)
            return {"plaintext": b64(plaintext)}
        assert self.session is not None, "no session yet"
        return {"plaintext": b64(self.session.decrypt(msg))}

    def encrypt(self, req: dict) -> dict:
        assert self.session is not None, "no session yet"
        kind, body = self.session.encrypt(unb64(req["plaintext"])).to_parts()
        return {"type": kind, "body": b64(body)}

    def encrypt_many(self, req: dict) -> dict:
        """Encrypts `count` one-byte-index messages at once (for gap and skipped-key tests)."""
        assert self.session is not None, "no session yet"
        out = []
        for i in range(req["count"]):
            kind, body = self.session.encrypt(i.to_bytes(2, "big")).to_parts()
            out.append(b64(body))
        return {"bodies": out}


def main() -> None:
    peer = Peer()
    for line in sys.stdin:
        req = json.loads(line)
        try:
            answer = {"ok": True, **getattr(peer, req["op"])(req)}
        except Exception as exc:  # the test wants every failure as an answer
            answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
