"""``python -m synthfuse.shared`` is the ``synthfuse`` command."""

from synthfuse.shared.cli import main

raise SystemExit(main())
