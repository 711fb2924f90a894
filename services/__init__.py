"""LLM Mesh: the store, inference, orchestrator and gateway services, and the `llm-mesh` command."""

# In the order `llm-mesh up` starts them (each after what it calls); they stop in reverse.
SERVICES = ("store", "inference", "orchestrator", "gateway")
