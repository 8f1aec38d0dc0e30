"""``/object_info``: node definitions in the shape and key order of ComfyUI 0.3.64's ``node_info``.

``input`` is ``INPUT_TYPES()`` as declared, ``input_order`` the names per section, then ``output``,
``output_is_list``, ``output_name``, ``name``, ``display_name``, ``description``, ``python_module``,
``category``, ``output_node``, and ``output_tooltips`` / ``deprecated`` / ``experimental`` / ``api_node`` only
when a class sets them. Call it with the host's services installed (combo lists such as the input images come
from the host's folders).
"""
from __future__ import annotations


def node_info(class_type: str, cls, display_name: str, python_module: str) -> dict:
    declared = cls.INPUT_TYPES()
    outputs = list(getattr(cls, "RETURN_TYPES", ()))
    info = {
        "input": declared,
        "input_order": {section: list(inputs.keys()) for section, inputs in declared.items()},
        "output": outputs,
        "output_is_list": list(getattr(cls, "OUTPUT_IS_LIST", [False] * len(outputs))),
        "output_name": list(getattr(cls, "RETURN_NAMES", outputs)),
        "name": class_type,
        "display_name": display_name,
        "description": getattr(cls, "DESCRIPTION", ""),
        "python_module": python_module,
        "category": getattr(cls, "CATEGORY", "sd"),
        "output_node": getattr(cls, "OUTPUT_NODE", False) is True,
    }
    if hasattr(cls, "OUTPUT_TOOLTIPS"):
        info["output_tooltips"] = list(cls.OUTPUT_TOOLTIPS)
    for flag in ("DEPRECATED", "EXPERIMENTAL"):
        if getattr(cls, flag, False):
            info[flag.lower()] = True
    if hasattr(cls, "API_NODE"):
        info["api_node"] = cls.API_NODE
    return info
