"""The inference service: model backends behind one streaming Generate RPC."""
