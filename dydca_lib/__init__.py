"""dydca_lib: the library behind the Dy-DCA reproduction notebooks.

Data flows one way and imports follow it (a module imports only from its left, plus the shared
helpers ``paths``, ``io``, ``runinfo``, ``published``):

data (``sources``, ``video``, ``windows``, ``codec``, ``metrics``, ``patches``, ``tensors``) -> learning
(``models``, ``train``, ``general``, ``params``, ``pipeline``, ``evaluate``, ``methods``, ``registry``,
``comparison``, ``budget``, ``longvideo``, ``window_runs``, ``scores``, ``cells``) ->
``compiler`` (all TVM building) -> ``client`` (what a device runs; no torch) -> ``bench`` and
``delivery``, ``longdelivery``, ``longcurves`` (the experiments of notebooks 05/06, 08 and 08b) -> ``figures``, ``report`` -> ``reproduce``.
"""

__version__ = "0.1.0"
