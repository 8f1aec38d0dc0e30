"""ComfyUI node classes, one module per pipeline stage (filled in by the nodes issue)."""
NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}
