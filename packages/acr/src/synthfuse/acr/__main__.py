"""``python -m synthfuse.acr`` is ``synthfuse acr``."""

from synthfuse.acr.cli import main

raise SystemExit(main())
