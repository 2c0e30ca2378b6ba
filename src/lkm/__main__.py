from lkm.cli import entry

entry()
