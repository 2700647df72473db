"""``python -m synthfuse.synthe`` is ``synthfuse synthe``."""

from synthfuse.synthe.cli import main

raise SystemExit(main())
