"""Built-in model adapters; installed as `aesbench.baselines`. Each module registers its models."""
