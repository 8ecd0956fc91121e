"""pyserini_ext: modern neural retrievers plugged into Pyserini's search APIs.

Importing the package first configures Java for Anserini (see :mod:`pyserini_ext.jvm`),
so it must be imported before anything from ``pyserini``.
"""

from pyserini_ext import jvm as _jvm

_jvm.configure()

__version__ = "0.1.0"
