"""``python -m botster.sessions``: one session process (see ``botster.sessions.process``)."""

import sys

# A session never speaks TLS, but asyncio imports ssl (and libcrypto) when it can: ~5 MB of
# every session's memory. Marking the module absent makes asyncio skip it.
sys.modules.setdefault("ssl", None)  # type: ignore[arg-type]

from botster.sessions.process import main  # noqa: E402

raise SystemExit(main())
