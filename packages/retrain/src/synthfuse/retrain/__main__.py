"""``python -m synthfuse.retrain`` is ``synthfuse retrain``."""

from synthfuse.retrain.cli import main

raise SystemExit(main())
