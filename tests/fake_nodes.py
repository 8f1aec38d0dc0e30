"""Tiny nodes with ComfyUI's V1 attributes, for executor tests that must not depend on the model."""
from __future__ import annotations

CALLS: list = []


class Number:
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {"default": 1, "min": 0, "max": 100})}}

    def run(self, value):
        CALLS.append(("Number", value))
        return (value,)


class Add:
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"a": ("INT", {"default": 0}), "b": ("INT", {"default": 0})},
                "optional": {"scale": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0})}}

    def run(self, a, b, scale=1.0):
        CALLS.append(("Add", a, b))
        return (int((a + b) * scale),)


class Text:
    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"mode": (["upper", "lower"],), "text": ("STRING", {"default": "x"})}}

    def run(self, mode, text):
        CALLS.append(("Text", mode))
        return (text.upper() if mode == "upper" else text.lower(),)


class Show:
    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT",)}, "hidden": {"node": "UNIQUE_ID"}}

    def run(self, value, node=None):
        CALLS.append(("Show", value))
        return {"ui": {"text": [str(value)], "node": [node]}}


class Checked:
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"even": ("INT", {"default": 2, "max": 10})}}

    @classmethod
    def VALIDATE_INPUTS(cls, even):
        return True if even % 2 == 0 else f"{even} is odd"

    def run(self, even):
        return (even,)


class Fail:
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT",)}}

    def run(self, value):
        raise ValueError("cannot read /home/someone/secret/model.safetensors")


NODES = {"Number": Number, "Add": Add, "Text": Text, "Show": Show, "Checked": Checked, "Fail": Fail}
