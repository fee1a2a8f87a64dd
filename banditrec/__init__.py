"""banditrec: a self-hosted contextual-bandit personalization service.

Importing the package loads nothing else: `banditrec.errors`, `banditrec.checks` and
`banditrec.logs` are the standard-library-only foundation every package may import;
`banditrec.config` assembles the packages' settings; `banditrec.cli` and `banditrec.build` are
the top.
"""

__version__ = "0.1.0"
