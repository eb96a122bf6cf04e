"""coexplore: differentiable co-exploration of neural networks and their accelerators.

Implements DANCE (Choi et al., DAC 2021, arXiv 2009.06237) and HDX (Hong et al.,
DAC 2022, arXiv 2301.09312) on top of the ``accelerators`` cost model and the
``search_spaces`` supernet.
"""

__version__ = "0.1.0"
