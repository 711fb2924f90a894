"""Store domain errors."""

from services.common.errors import Unavailable


class StoreUnavailable(Unavailable):
    code = "store_unavailable"
