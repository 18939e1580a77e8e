"""dydca_lib: the library behind the Dy-DCA reproduction notebooks.

Data flows one way and imports follow it:
``sources``/``video`` (clips, decode, LR, chunks) -> ``metrics`` -> ``figures`` -> ``reproduce``.
Small shared helpers (``paths``, ``io``, ``runinfo``) may be imported from anywhere.
"""

__version__ = "0.1.0"
