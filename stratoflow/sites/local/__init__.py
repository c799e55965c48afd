"""The local site: jobs run as processes on this machine, data on its filesystem."""

from stratoflow.config import stratoflow_home
from stratoflow.sites.local.compute import LocalCompute
from stratoflow.sites.local.config import LocalConfig
from stratoflow.sites.local.storage import LocalStorage

__all__ = ["LocalCompute", "LocalConfig", "LocalStorage", "stratoflow_home"]
