"""``python -m botster.sessions``: one session process (see ``botster.sessions.process``)."""

from botster.sessions.process import main

raise SystemExit(main())
