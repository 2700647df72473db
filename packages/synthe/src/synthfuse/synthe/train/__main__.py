"""``python -m synthfuse.synthe.train ARGS`` is ``synthfuse synthe train ARGS``."""

import sys

from synthfuse.synthe.cli import main

raise SystemExit(main(["train", *sys.argv[1:]]))
