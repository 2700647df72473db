"""``python -m synthfuse.koda`` is ``synthfuse koda``."""

from synthfuse.koda.cli import main

raise SystemExit(main())
