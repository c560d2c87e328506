"""The hub's remote access: its relay link (and, with WebRTC, end-to-end encryption)."""
