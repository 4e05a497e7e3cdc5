"""Built-in task definitions (YAML) and the tiny splits they read; installed as `aesbench.tasks`."""
