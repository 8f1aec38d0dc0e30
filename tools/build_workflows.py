"""Writes the example workflows: workflows/<title>.json (the editor's UI format, nodes laid out at the sizes the
editor draws them, groups that do not overlap, a note) and workflows/api/<title>.json (the API-format twin), from
the short descriptions below, plus the example input images that the image-conditioned workflows load
(workflows/input/).

The file name is the template's title: ComfyUI lists a pack's example workflows by file name, and the editor
(comfyui-frontend-package 1.58.1) titles a custom node pack's template cards with that name.

    python tools/build_workflows.py

Widget values are laid out from the node classes themselves, so a workflow can never disagree with the nodes;
tests/host/test_workflows.py checks that the files are what this script writes.
"""
from __future__ import annotations

import json
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLUMN, ROW = 380, 40           # grid spacing in canvas units: a column is a node and the gap between groups
NODE_WIDTH = 320
# The editor's measures (litegraph's LGraphNode.computeSize in comfyui-frontend-package 1.58.1): the title bar
# above a node's position, a row per input socket (inputs that are widgets sit on their widget's row) or output,
# each widget's height plus 4, 8 after the widgets and 6 at the bottom. Text boxes and the 3D viewer are taller.
TITLE_HEIGHT, SLOT_HEIGHT, WIDGET_HEIGHT = 30, 20, 20
TEXT_BOX_HEIGHT = 80
VIEWER_HEIGHT = 240             # web/unidit.js: the in-node 3D viewer's minimum height
IMAGE_PREVIEW_HEIGHT = 220      # the editor's preview of the image an upload widget (Load Image) picked
VIEWER_NODES = ("UniDiTSaveSplat", "UniDiTSaveMesh")
NODE_GAP = 30                   # between nodes of one group (below the next one's title bar)
GROUP_TOP, GROUP_SIDE = 60, 20  # a group's box around its nodes: room for its title above, a margin elsewhere
GROUP_GAP = 40                  # between the boxes of two groups, one above the other (side by side: COLUMN's 20)
GROUP_COLOURS = {"Model": "#3f789e", "Prompt": "#8A8", "Image": "#b58b2a", "Video": "#a1309b", "3D": "#88A"}
# The files ComfyUI users keep for Wan (models/diffusion_models, models/text_encoders, models/vae).
WAN_T5 = "umt5_xxl_fp8_e4m3fn_scaled.safetensors"
WAN21 = {"diffusion_model": "wan2.1_t2v_1.3B_fp16.safetensors", "text_encoder": WAN_T5, "vae": "wan_2.1_vae.safetensors"}
WAN22 = {"diffusion_model": "wan2.2_ti2v_5B_fp16.safetensors", "text_encoder": WAN_T5, "vae": "wan2.2_vae.safetensors"}
SHIPPED_LORA = "unidit-toyworld-lora4-purple-torus.safetensors"     # models/loras, from `unidit train --lora-rank`
WAN_FILES_NOTE = ("Files: models/diffusion_models/{diffusion_model}, models/text_encoders/{text_encoder}, "
                  "models/vae/{vae} (the files ComfyUI's own Wan examples use). Needs a GPU for these sizes; on a "
                  "CPU use a small size and few frames.")


@dataclass
class Node:
    id: int
    type: str
    column: float
    row: float
    widgets: dict = field(default_factory=dict)
    links: dict = field(default_factory=dict)      # input name -> (source node id, output slot)
    title: str | None = None


# Each example's title, its file name.
TITLES = {"text_to_image": "Text to image", "text_to_video": "Text to video", "text_to_3d": "Text to 3D",
          "image_to_video": "Image to video", "image_to_3d": "Image to 3D",
          "one_prompt_three_modalities": "One prompt, three modalities",
          "text_to_3d_refined": "Text to 3D refined", "turntable_to_mesh": "Turntable frames to mesh",
          "wan_text_to_video": "Wan 2.1 text to video", "wan_text_to_image": "Wan 2.1 text to image",
          "wan_image_to_video": "Wan 2.2 image to video", "image_to_image": "Image to image",
          "video_extension": "Video extension", "first_last_frame": "First and last frame to video",
          "lora": "LoRA", "depth_control": "Depth control"}


@dataclass
class Workflow:
    name: str                                       # its id (the UUID is made from it); TITLES gives its title
    note: str
    nodes: list
    groups: dict                                    # title -> node ids inside


def examples() -> list:
    loader = Node(1, "UniDiTLoader", 0, 0)
    return [
        Workflow("text_to_image", "Text -> image. Type a prompt such as 'a small green torus on white'. The demo "
                 "model knows 5 shapes, 8 colours, 3 sizes and 4 backgrounds. Press Queue; change only the seed and "
                 "queue again: the model stays loaded and only the sampler and what follows run.", [
                     loader,
                     Node(2, "UniDiTTextEncode", 0, 5, {"text": "a red cube"}, {"model": (1, 0)}),
                     Node(3, "UniDiTEmptyImageLatent", 1, 0, {}, {"model": (1, 0)}),
                     Node(4, "UniDiTGuidance", 1, 5),
                     Node(5, "UniDiTSampler", 2, 0, {"seed": 1}, {"model": (1, 0), "positive": (2, 0),
                                                                   "latent": (3, 0), "guidance": (4, 0)}),
                     Node(6, "UniDiTDecode", 3, 0, {}, {"model": (1, 0), "latent": (5, 0)}),
                     Node(7, "UniDiTSaveImage", 3, 4, {"filename_prefix": "UniDiT/image"}, {"images": (6, 0)}),
                 ], {"Model": [1], "Prompt": [2, 4], "Image": [3, 5, 6, 7]}),
        Workflow("text_to_video", "Text -> video: 9 frames at 8 fps. Describe a motion: 'moving left / right / up / "
                 "down', 'bouncing', or 'spinning' (cubes and rings). The frame rate travels with the latent.", [
                     loader,
                     Node(2, "UniDiTTextEncode", 0, 5, {"text": "a bouncing blue ball"}, {"model": (1, 0)}),
                     Node(3, "UniDiTEmptyVideoLatent", 1, 0, {}, {"model": (1, 0)}),
                     Node(4, "UniDiTGuidance", 1, 7),
                     Node(5, "UniDiTSampler", 2, 0, {"seed": 2}, {"model": (1, 0), "positive": (2, 0),
                                                                   "latent": (3, 0), "guidance": (4, 0)}),
                     Node(6, "UniDiTDecode", 3, 0, {}, {"model": (1, 0), "latent": (5, 0)}),
                     Node(7, "UniDiTSaveVideo", 3, 4, {"filename_prefix": "UniDiT/video"},
                          {"images": (6, 0), "fps": (6, 1)}),
                 ], {"Model": [1], "Prompt": [2, 4], "Video": [3, 5, 6, 7]}),
        Workflow("text_to_3d", "Text -> 3D: four views around the object are generated together, decoded into one "
                 "Gaussian splat (PLY, opens in SuperSplat and splat viewers), turned into a mesh (GLB, opens in "
                 "Blender and three.js) and rendered as a turntable. Drag in the 3D previews to look around.", [
                     loader,
                     Node(2, "UniDiTTextEncode", 0, 5, {"text": "a purple torus"}, {"model": (1, 0)}),
                     Node(3, "UniDiTEmpty3DLatent", 1, 0, {}, {"model": (1, 0)}),
                     Node(4, "UniDiTGuidance", 1, 7),
                     Node(5, "UniDiTSampler", 2, 0, {"seed": 3}, {"model": (1, 0), "positive": (2, 0),
                                                                   "latent": (3, 0), "guidance": (4, 0)}),
                     Node(6, "UniDiTDecodeSplat", 3, 0, {}, {"model": (1, 0), "latent": (5, 0)}),
                     Node(7, "UniDiTSaveSplat", 4, 0, {"filename_prefix": "UniDiT/splat"}, {"splat": (6, 0)}),
                     Node(8, "UniDiTSplatToMesh", 3, 5, {"resolution": 96}, {"splat": (6, 0)}),
                     Node(9, "UniDiTSaveMesh", 4, 9, {"filename_prefix": "UniDiT/mesh"}, {"mesh": (8, 0)}),
                     Node(10, "UniDiTRenderSplat", 3, 11, {"frames": 24}, {"splat": (6, 0)}),
                     Node(11, "UniDiTSaveVideo", 4, 18, {"filename_prefix": "UniDiT/turntable", "fps": 12.0,
                                                         "format": "webp"}, {"images": (10, 0)}),
                 ], {"Model": [1], "Prompt": [2, 4], "3D": [3, 5, 6, 7, 8, 9, 10, 11]}),
        Workflow("image_to_video", "Image -> video: the image becomes the first frame (kept exactly) and the model "
                 "animates it as the prompt says. Load your own image with the Load Image node (it is resized to "
                 "the latent's size); unidit_example.png is a red cube.", [
                     loader,
                     Node(2, "LoadImage", 0, 5, {"image": "unidit_example.png"}),
                     Node(3, "UniDiTTextEncode", 0, 16, {"text": "a red cube moving right"}, {"model": (1, 0)}),
                     Node(4, "UniDiTEmptyVideoLatent", 1, 0, {}, {"model": (1, 0)}),
                     Node(5, "UniDiTImageCondition", 1, 8, {}, {"model": (1, 0), "latent": (4, 0), "image": (2, 0)}),
                     Node(6, "UniDiTSampler", 2, 0, {"seed": 4}, {"model": (1, 0), "positive": (3, 0),
                                                                   "latent": (5, 0)}),
                     Node(7, "UniDiTDecode", 3, 0, {}, {"model": (1, 0), "latent": (6, 0)}),
                     Node(8, "UniDiTSaveVideo", 3, 4, {"filename_prefix": "UniDiT/image_to_video"},
                          {"images": (7, 0), "fps": (7, 1)}),
                 ], {"Model": [1], "Prompt": [2, 3], "Video": [4, 5, 6, 7, 8]}),
        Workflow("image_to_3d", "Image -> 3D: the image becomes the front view (kept exactly) and the model "
                 "generates the other three views, decoded into a splat and a mesh. Use an object centred on a plain "
                 "background, seen slightly from above, like unidit_example.png.", [
                     loader,
                     Node(2, "LoadImage", 0, 5, {"image": "unidit_example.png"}),
                     Node(3, "UniDiTTextEncode", 0, 16, {"text": "a red cube"}, {"model": (1, 0)}),
                     Node(4, "UniDiTEmpty3DLatent", 1, 0, {}, {"model": (1, 0)}),
                     Node(5, "UniDiTImageCondition", 1, 8, {}, {"model": (1, 0), "latent": (4, 0), "image": (2, 0)}),
                     Node(6, "UniDiTSampler", 2, 0, {"seed": 5}, {"model": (1, 0), "positive": (3, 0),
                                                                   "latent": (5, 0)}),
                     Node(7, "UniDiTDecodeSplat", 3, 0, {}, {"model": (1, 0), "latent": (6, 0)}),
                     Node(8, "UniDiTSaveSplat", 4, 0, {"filename_prefix": "UniDiT/image_to_3d"}, {"splat": (7, 0)}),
                     Node(9, "UniDiTSplatToMesh", 3, 5, {"resolution": 96}, {"splat": (7, 0)}),
                     Node(10, "UniDiTSaveMesh", 4, 9, {"filename_prefix": "UniDiT/image_to_3d"}, {"mesh": (9, 0)}),
                 ], {"Model": [1], "Prompt": [2, 3], "3D": [4, 5, 6, 7, 8, 9, 10]}),
        Workflow("one_prompt_three_modalities", "One prompt, three modalities, one subject: the image is made "
                 "first, then it becomes the first frame of the video and the front view of the 3D asset, so all "
                 "three show the same object. One loader and one text encoding serve every branch; the weights are "
                 "loaded once. The Guidance node steers the image only: the video and the 3D samplers, left "
                 "without one, use the model's guidance for given frames (1.5), which keeps the image's "
                 "colours.", [
                     loader,
                     Node(2, "UniDiTTextEncode", 0, 5, {"text": "a yellow cylinder"}, {"model": (1, 0)}),
                     Node(3, "UniDiTGuidance", 0, 12),
                     Node(4, "UniDiTEmptyImageLatent", 1, 0, {}, {"model": (1, 0)}),
                     Node(5, "UniDiTSampler", 2, 0, {"seed": 6}, {"model": (1, 0), "positive": (2, 0),
                                                                   "latent": (4, 0), "guidance": (3, 0)}),
                     Node(6, "UniDiTDecode", 3, 0, {}, {"model": (1, 0), "latent": (5, 0)}),
                     Node(7, "UniDiTSaveImage", 4, 0, {"filename_prefix": "UniDiT/all_image"}, {"images": (6, 0)}),
                     Node(8, "UniDiTEmptyVideoLatent", 1, 12, {}, {"model": (1, 0)}),
                     Node(18, "UniDiTImageCondition", 1, 21, {}, {"model": (1, 0), "latent": (8, 0), "image": (6, 0)}),
                     Node(9, "UniDiTSampler", 2, 12, {"seed": 6}, {"model": (1, 0), "positive": (2, 0),
                                                                    "latent": (18, 0)}),
                     Node(10, "UniDiTDecode", 3, 12, {}, {"model": (1, 0), "latent": (9, 0)}),
                     Node(11, "UniDiTSaveVideo", 4, 12, {"filename_prefix": "UniDiT/all_video"},
                          {"images": (10, 0), "fps": (10, 1)}),
                     Node(12, "UniDiTEmpty3DLatent", 1, 27, {}, {"model": (1, 0)}),
                     Node(19, "UniDiTImageCondition", 1, 37, {}, {"model": (1, 0), "latent": (12, 0), "image": (6, 0)}),
                     Node(13, "UniDiTSampler", 2, 27, {"seed": 6}, {"model": (1, 0), "positive": (2, 0),
                                                                     "latent": (19, 0)}),
                     Node(14, "UniDiTDecodeSplat", 3, 27, {}, {"model": (1, 0), "latent": (13, 0)}),
                     Node(15, "UniDiTSaveSplat", 4, 27, {"filename_prefix": "UniDiT/all_splat"}, {"splat": (14, 0)}),
                     Node(16, "UniDiTSplatToMesh", 3, 32, {"resolution": 96}, {"splat": (14, 0)}),
                     Node(17, "UniDiTSaveMesh", 4, 36, {"filename_prefix": "UniDiT/all_mesh"}, {"mesh": (16, 0)}),
                 ], {"Model": [1], "Prompt": [2, 3], "Image": [4, 5, 6, 7], "Video": [8, 18, 9, 10, 11],
                     "3D": [12, 19, 13, 14, 15, 16, 17]}),
        Workflow("image_to_image", "Image -> image: UniDiT Encode puts the image into a latent and the Sampler "
                 "starts part-way (denoise): lower keeps more of the image, 1.0 ignores it. On the demo model 0.8 "
                 "keeps the layout and takes the prompt's colour (0.5-0.7 blend it with the image's): here the "
                 "red cube of unidit_example.png becomes blue.", [
                     loader,
                     Node(2, "LoadImage", 0, 5, {"image": "unidit_example.png"}),
                     Node(3, "UniDiTTextEncode", 0, 16, {"text": "a blue cube"}, {"model": (1, 0)}),
                     Node(4, "UniDiTEncode", 1, 0, {"modality": "image"}, {"model": (1, 0), "images": (2, 0)}),
                     Node(5, "UniDiTSampler", 2, 0, {"seed": 10, "denoise": 0.8},
                          {"model": (1, 0), "positive": (3, 0), "latent": (4, 0)}),
                     Node(6, "UniDiTDecode", 3, 0, {}, {"model": (1, 0), "latent": (5, 0)}),
                     Node(7, "UniDiTSaveImage", 3, 4, {"filename_prefix": "UniDiT/image_to_image"},
                          {"images": (6, 0)}),
                 ], {"Model": [1], "Prompt": [2, 3], "Image": [4, 5, 6, 7]}),
        Workflow("video_extension", "Video extension: a clip is made, then UniDiT Continue Clip starts the next one "
                 "from its last frame, and UniDiT Join Latents puts the two latents together so that one Decode "
                 "makes all 17 frames without a jump. For longer videos, continue from a Decode of the joined "
                 "latent and join again.", [
                     loader,
                     Node(2, "UniDiTTextEncode", 0, 5, {"text": "a red cube moving right"}, {"model": (1, 0)}),
                     Node(3, "UniDiTEmptyVideoLatent", 1, 0, {}, {"model": (1, 0)}),
                     Node(4, "UniDiTSampler", 2, 0, {"seed": 11}, {"model": (1, 0), "positive": (2, 0),
                                                                    "latent": (3, 0)}),
                     Node(5, "UniDiTDecode", 3, 0, {}, {"model": (1, 0), "latent": (4, 0)}),
                     Node(6, "UniDiTContinueClip", 1, 11, {}, {"model": (1, 0), "clip": (5, 0)}),
                     Node(7, "UniDiTSampler", 2, 11, {"seed": 12}, {"model": (1, 0), "positive": (2, 0),
                                                                     "latent": (6, 0)}),
                     Node(8, "UniDiTJoinLatents", 3, 11, {}, {"first": (4, 0), "second": (7, 0)}),
                     Node(9, "UniDiTDecode", 4, 0, {}, {"model": (1, 0), "latent": (8, 0)}),
                     Node(10, "UniDiTSaveVideo", 4, 5, {"filename_prefix": "UniDiT/video_extension"},
                          {"images": (9, 0), "fps": (9, 1)}),
                 ], {"Model": [1], "Prompt": [2], "Video": [3, 4, 5, 6, 7, 8, 9, 10]}),
        Workflow("first_last_frame", "First and last frame: two images become frames 0 and 8 of a 9-frame video "
                 "(UniDiT Keyframes, positions '0, -1') and the model makes the motion between them. Batch Images "
                 "puts the two images in order; use your own pair of the same object.", [
                     loader,
                     Node(2, "LoadImage", 0, 5, {"image": "unidit_example.png"}),
                     Node(3, "LoadImage", 0, 16, {"image": "unidit_example_end.png"}),
                     Node(4, "ImageBatch", 1, 15, {}, {"image1": (2, 0), "image2": (3, 0)}),
                     Node(5, "UniDiTTextEncode", 0, 27, {"text": "a red cube moving right"}, {"model": (1, 0)}),
                     Node(6, "UniDiTEmptyVideoLatent", 1, 0, {}, {"model": (1, 0)}),
                     Node(7, "UniDiTKeyframes", 1, 20, {"positions": "0, -1"},
                          {"model": (1, 0), "latent": (6, 0), "images": (4, 0)}),
                     Node(8, "UniDiTSampler", 2, 0, {"seed": 13}, {"model": (1, 0), "positive": (5, 0),
                                                                    "latent": (7, 0)}),
                     Node(9, "UniDiTDecode", 3, 0, {}, {"model": (1, 0), "latent": (8, 0)}),
                     Node(10, "UniDiTSaveVideo", 3, 4, {"filename_prefix": "UniDiT/first_last_frame"},
                          {"images": (9, 0), "fps": (9, 1)}),
                 ], {"Model": [1], "Prompt": [2, 3, 4, 5], "Video": [6, 7, 8, 9, 10]}),
        Workflow("lora", "LoRA: UniDiT LoRA adds a LoRA to the model while sampling; the base weights stay loaded "
                 "as they are. The shipped one was trained with `unidit train --lora-rank 4 --subject 'purple "
                 "torus'` on a pair the demo model never saw. Set strength 0 (or remove the node) for the base "
                 "model; chain LoRA nodes to stack them.", [
                     loader,
                     Node(2, "UniDiTLoRA", 0, 7, {"lora_name": SHIPPED_LORA, "strength": 1.0}, {"model": (1, 0)}),
                     Node(3, "UniDiTTextEncode", 0, 12, {"text": "a purple torus"}, {"model": (1, 0)}),
                     Node(4, "UniDiTEmptyImageLatent", 1, 0, {}, {"model": (1, 0)}),
                     Node(5, "UniDiTSampler", 2, 0, {"seed": 14}, {"model": (2, 0), "positive": (3, 0),
                                                                    "latent": (4, 0)}),
                     Node(6, "UniDiTDecode", 3, 0, {}, {"model": (1, 0), "latent": (5, 0)}),
                     Node(7, "UniDiTSaveImage", 3, 4, {"filename_prefix": "UniDiT/lora"}, {"images": (6, 0)}),
                 ], {"Model": [1, 2], "Prompt": [3], "Image": [4, 5, 6, 7]}),
        Workflow("depth_control", "Depth control: UniDiT Control gives the Sampler a depth map (brighter = nearer, "
                 "background black, as depth estimators give it); the object takes the map's place, size and pose, "
                 "the prompt its colour and background. unidit_depth_example.png is a large torus turned towards "
                 "the camera; connect a depth estimator's output, or an object mask to the mask input.", [
                     loader,
                     Node(2, "LoadImage", 0, 5, {"image": "unidit_depth_example.png"}),
                     Node(3, "UniDiTTextEncode", 0, 16, {"text": "a green torus on black"}, {"model": (1, 0)}),
                     Node(4, "UniDiTEmptyImageLatent", 1, 0, {}, {"model": (1, 0)}),
                     Node(5, "UniDiTControl", 1, 5, {}, {"model": (1, 0), "latent": (4, 0), "depth": (2, 0)}),
                     Node(6, "UniDiTSampler", 2, 0, {"seed": 15}, {"model": (1, 0), "positive": (3, 0),
                                                                    "latent": (5, 0)}),
                     Node(7, "UniDiTDecode", 3, 0, {}, {"model": (1, 0), "latent": (6, 0)}),
                     Node(8, "UniDiTSaveImage", 3, 4, {"filename_prefix": "UniDiT/depth_control"},
                          {"images": (7, 0)}),
                 ], {"Model": [1], "Prompt": [2, 3], "Image": [4, 5, 6, 7, 8]}),
        Workflow("text_to_3d_refined", "Text -> 3D refined: the four generated views are decoded, and a splat is "
                 "fitted to them (UniDiT Fit Splats, from the decoded splat, the latent's own cameras, rendering at "
                 "2x) so it holds up at larger sizes; the mesh is one closed piece with a UV atlas and a baked "
                 "texture (GLB with baseColorTexture; also OBJ + MTL + PNG with format obj).", [
                     loader,
                     Node(2, "UniDiTTextEncode", 0, 5, {"text": "a yellow cone"}, {"model": (1, 0)}),
                     Node(3, "UniDiTEmpty3DLatent", 1, 0, {}, {"model": (1, 0)}),
                     Node(4, "UniDiTSampler", 2, 0, {"seed": 3}, {"model": (1, 0), "positive": (2, 0),
                                                                   "latent": (3, 0)}),
                     Node(5, "UniDiTDecodeSplat", 3, 0, {}, {"model": (1, 0), "latent": (4, 0)}),
                     Node(6, "UniDiTDecode", 3, 5, {}, {"model": (1, 0), "latent": (4, 0)}),
                     Node(7, "UniDiTFitSplats", 4, 0, {"iterations": 300, "supersample": 2},
                          {"images": (6, 0), "splat": (5, 0), "cameras_from": (4, 0)}),
                     Node(8, "UniDiTSaveSplat", 5, 0, {"filename_prefix": "UniDiT/refined_splat"}, {"splat": (7, 0)}),
                     Node(9, "UniDiTSplatToMesh", 4, 12, {"resolution": 96, "target_faces": 20000,
                                                          "texture_size": 512}, {"splat": (7, 0)}),
                     Node(10, "UniDiTSaveMesh", 5, 9, {"filename_prefix": "UniDiT/refined_mesh"}, {"mesh": (9, 0)}),
                 ], {"Model": [1], "Prompt": [2], "3D": [3, 4, 5, 6, 7, 8, 9, 10]}),
        Workflow("turntable_to_mesh", "Turntable frames -> mesh: frames of an object going round (here four toy-world "
                 "views a quarter turn apart, batched with Batch Images) are fitted with a splat by UniDiT Fit "
                 "Splats and turned into a textured mesh. Connect any frames instead: a video model's turntable, "
                 "or your photos; set arc (negative if it turns the other way), distance and field of view to "
                 "match.", [
                     Node(1, "LoadImage", 0, 0, {"image": "unidit_turntable_0.png"}),
                     Node(2, "LoadImage", 0, 9, {"image": "unidit_turntable_1.png"}),
                     Node(3, "LoadImage", 0, 18, {"image": "unidit_turntable_2.png"}),
                     Node(4, "LoadImage", 0, 27, {"image": "unidit_turntable_3.png"}),
                     Node(5, "ImageBatch", 1, 0, {}, {"image1": (1, 0), "image2": (2, 0)}),
                     Node(6, "ImageBatch", 1, 5, {}, {"image1": (5, 0), "image2": (3, 0)}),
                     Node(7, "ImageBatch", 1, 10, {}, {"image1": (6, 0), "image2": (4, 0)}),
                     Node(8, "UniDiTFitSplats", 2, 0, {"iterations": 300}, {"images": (7, 0)}),
                     Node(9, "UniDiTSaveSplat", 3, 0, {"filename_prefix": "UniDiT/turntable_splat"},
                          {"splat": (8, 0)}),
                     Node(10, "UniDiTSplatToMesh", 2, 12, {"resolution": 96, "target_faces": 20000,
                                                           "texture_size": 512}, {"splat": (8, 0)}),
                     Node(11, "UniDiTSaveMesh", 3, 9, {"filename_prefix": "UniDiT/turntable_mesh"},
                          {"mesh": (10, 0)}),
                 ], {"Image": [1, 2, 3, 4, 5, 6, 7], "3D": [8, 9, 10, 11]}),
        *wan_examples(),
    ]


def wan_examples() -> list:
    """Wan 2.1 T2V 1.3B text -> video and text -> image; Wan 2.2 TI2V-5B image -> video."""
    wan21, wan22 = Node(1, "UniDiTPartsLoader", 0, 0, WAN21), Node(1, "UniDiTPartsLoader", 0, 0, WAN22)
    return [
        Workflow("wan_text_to_video", "Wan 2.1 text -> video: 81 frames at 832x480, 16 fps (5 s). Wan's official "
                 "negative prompt is used unless you connect one to UniDiT Guidance. "
                 + WAN_FILES_NOTE.format(**WAN21), [
                     wan21,
                     Node(2, "UniDiTTextEncode", 0, 8, {"text": "a red fox trotting through fresh snow in a pine "
                                                                "forest, soft morning light, the camera follows it"},
                          {"model": (1, 0)}),
                     Node(3, "UniDiTEmptyVideoLatent", 1, 0, {"width": 832, "height": 480, "frames": 81, "fps": 16.0},
                          {"model": (1, 0)}),
                     Node(4, "UniDiTGuidance", 1, 7, {"scale": 5.0}),
                     Node(5, "UniDiTSampler", 2, 0, {"seed": 7, "steps": 30, "solver": "euler"},
                          {"model": (1, 0), "positive": (2, 0), "latent": (3, 0), "guidance": (4, 0)}),
                     Node(6, "UniDiTDecode", 3, 0, {}, {"model": (1, 0), "latent": (5, 0)}),
                     Node(7, "UniDiTSaveVideo", 3, 4, {"filename_prefix": "UniDiT/wan_video"},
                          {"images": (6, 0), "fps": (6, 1)}),
                 ], {"Model": [1], "Prompt": [2, 4], "Video": [3, 5, 6, 7]}),
        Workflow("wan_text_to_image", "Wan 2.1 text -> image: a one-frame video is an image (832x480). "
                 + WAN_FILES_NOTE.format(**WAN21), [
                     wan21,
                     Node(2, "UniDiTTextEncode", 0, 8, {"text": "a lighthouse on a rocky coast at sunset, waves "
                                                                "breaking, dramatic clouds, photograph"},
                          {"model": (1, 0)}),
                     Node(3, "UniDiTEmptyImageLatent", 1, 0, {"width": 832, "height": 480}, {"model": (1, 0)}),
                     Node(4, "UniDiTGuidance", 1, 5, {"scale": 5.0}),
                     Node(5, "UniDiTSampler", 2, 0, {"seed": 8, "steps": 30, "solver": "euler"},
                          {"model": (1, 0), "positive": (2, 0), "latent": (3, 0), "guidance": (4, 0)}),
                     Node(6, "UniDiTDecode", 3, 0, {}, {"model": (1, 0), "latent": (5, 0)}),
                     Node(7, "UniDiTSaveImage", 3, 4, {"filename_prefix": "UniDiT/wan_image"}, {"images": (6, 0)}),
                 ], {"Model": [1], "Prompt": [2, 4], "Image": [3, 5, 6, 7]}),
        Workflow("wan_image_to_video", "Wan 2.2 TI2V-5B image -> video: the image is the first frame (held "
                 "exactly), 121 frames at 1280x704, 24 fps. Load your own image (it is resized to the video's "
                 "size). " + WAN_FILES_NOTE.format(**WAN22), [
                     wan22,
                     Node(2, "LoadImage", 0, 8, {"image": "unidit_example.png"}),
                     Node(3, "UniDiTTextEncode", 0, 19, {"text": "a red cube slowly turns on a grey table, studio "
                                                                 "lighting"}, {"model": (1, 0)}),
                     Node(4, "UniDiTEmptyVideoLatent", 1, 0, {"width": 1280, "height": 704, "frames": 121,
                                                              "fps": 24.0}, {"model": (1, 0)}),
                     Node(5, "UniDiTImageCondition", 1, 8, {}, {"model": (1, 0), "latent": (4, 0), "image": (2, 0)}),
                     Node(6, "UniDiTGuidance", 1, 13, {"scale": 5.0}),
                     Node(7, "UniDiTSampler", 2, 0, {"seed": 9, "steps": 30, "solver": "euler"},
                          {"model": (1, 0), "positive": (3, 0), "latent": (5, 0), "guidance": (6, 0)}),
                     Node(8, "UniDiTDecode", 3, 0, {}, {"model": (1, 0), "latent": (7, 0)}),
                     Node(9, "UniDiTSaveVideo", 3, 4, {"filename_prefix": "UniDiT/wan_image_to_video"},
                          {"images": (8, 0), "fps": (8, 1)}),
                 ], {"Model": [1], "Prompt": [2, 3, 6], "Video": [4, 5, 7, 8, 9]}),
    ]


def build(workflow: Workflow, nodes: dict) -> tuple[dict, dict]:
    """(UI workflow, API prompt)."""
    from unidit.host.executor import input_spec, node_inputs
    from unidit.host.workflow import widget_slots

    links, ui_nodes, api = [], [], {}
    outgoing: dict = {}
    for node in workflow.nodes:
        for name, (source, slot) in node.links.items():
            links.append([len(links) + 1, source, slot, node.id, name,
                          nodes[_type_of(workflow, source)].RETURN_TYPES[slot]])
            outgoing.setdefault((source, slot), []).append(len(links))
    heights = {}
    for order, node in enumerate(workflow.nodes):
        cls = nodes[node.type]
        declared = node_inputs(cls)
        slots = widget_slots(cls)
        values = []
        for index, name in enumerate(slots):
            if name is None:  # control_after_generate / upload companions
                values.append("fixed" if slots[index - 1] in ("seed", "noise_seed") else "image")
                continue
            if name in node.widgets:
                values.append(node.widgets[name])
                continue
            kind, options = input_spec({**declared["required"], **declared["optional"]}[name])
            values.append(options.get("default", kind[0] if isinstance(kind, list) else None))
        sockets = []
        for section in ("required", "optional"):
            for name, spec in declared[section].items():
                kind, options = input_spec(spec)
                is_widget = name in slots
                link = next((link[0] for link in links if link[3] == node.id and link[4] == name), None)
                if is_widget and link is None:
                    continue
                entry = {"name": name, "type": "COMBO" if isinstance(kind, list) else kind, "link": link}
                if is_widget:
                    entry["widget"] = {"name": name}
                sockets.append(entry)
        for link in links:
            if link[3] == node.id:
                link[4] = next(i for i, s in enumerate(sockets) if s["name"] == link[4])
        outputs = [{"name": name, "type": kind, "slot_index": slot, "links": outgoing.get((node.id, slot), [])}
                   for slot, (kind, name) in enumerate(zip(cls.RETURN_TYPES, getattr(cls, "RETURN_NAMES",
                                                                                     cls.RETURN_TYPES)))]
        height = editor_height(node.type, declared, slots, sockets, outputs)
        heights[node.id] = height
        ui_nodes.append({
            "id": node.id, "type": node.type, "pos": [node.column * COLUMN, node.row * ROW],
            "size": [NODE_WIDTH, height], "flags": {}, "order": order, "mode": 0, "inputs": sockets,
            "outputs": outputs, "properties": {"Node name for S&R": node.type, "cnr_id": "comfyui-unidit"},
            "widgets_values": values, **({"title": node.title} if node.title else {})})
        api[str(node.id)] = {"class_type": node.type, "inputs": {}, "_meta": {"title": node.title or _display(node)}}
    for ui_node in ui_nodes:
        slots = widget_slots(nodes[ui_node["type"]])
        inputs = api[str(ui_node["id"])]["inputs"]
        for name, value in zip(slots, ui_node["widgets_values"]):
            if name is not None:
                inputs[name] = value
        for socket in ui_node["inputs"]:
            if socket["link"] is None:
                continue
            link = next(link for link in links if link[0] == socket["link"])
            inputs[socket["name"]] = [str(link[1]), link[2]]

    lay_out(ui_nodes, workflow.groups)
    groups = [{"id": index + 1, "title": title, "bounding": list(box), "color": GROUP_COLOURS[title],
               "font_size": 24, "flags": {}} for index, (title, box) in enumerate(group_boxes(ui_nodes,
                                                                                               workflow.groups).items())]
    note_id = max(n.id for n in workflow.nodes) + 1
    bottom = max(n["pos"][1] + n["size"][1] for n in ui_nodes)
    ui_nodes.append({"id": note_id, "type": "Note", "pos": [0, bottom + 80], "size": [NODE_WIDTH * 2, 140],
                     "flags": {}, "order": len(ui_nodes), "mode": 0, "inputs": [], "outputs": [],
                     "properties": {}, "widgets_values": [workflow.note], "color": "#432", "bgcolor": "#653",
                     "title": "About this workflow"})
    # The editor's schema requires a UUID here (anything else: "Invalid workflow against zod schema"); a fixed
    # one per example, so rebuilding changes nothing.
    ui = {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"unidit:workflows/{workflow.name}")), "revision": 0,
          "last_node_id": note_id, "last_link_id": len(links), "nodes": ui_nodes, "links": links, "groups": groups,
          "config": {}, "extra": {"ds": {"scale": 0.8, "offset": [40, 80]}}, "version": 0.4}
    return ui, api


def editor_height(kind: str, declared: dict, slots: list, sockets: list, outputs: list) -> int:
    """The height the editor gives a node (below its title bar; see the measures at the top)."""
    rows = max(len([socket for socket in sockets if "widget" not in socket]), len(outputs), 1)
    specs = {**declared["required"], **declared["optional"]}
    widgets = 0
    for name in slots:
        multiline = name is not None and len(specs[name]) > 1 and specs[name][1].get("multiline")
        widgets += (TEXT_BOX_HEIGHT if multiline else WIDGET_HEIGHT) + 4
    if kind in VIEWER_NODES:
        widgets += VIEWER_HEIGHT + 4
    if any(len(spec) > 1 and spec[1].get("image_upload") for spec in specs.values()):
        widgets += IMAGE_PREVIEW_HEIGHT + 4
    return rows * SLOT_HEIGHT + (widgets + 8 if widgets else 0) + 6


def lay_out(ui_nodes: list, groups: dict) -> None:
    """Move nodes down (never up or sideways) until no two nodes of a column overlap and no two group boxes
    overlap: a group that meets one above it moves down as a whole."""
    group_of = {member: title for title, members in groups.items() for member in members}
    for _ in range(100):
        moved = False
        by_column: dict = {}
        for node in sorted(ui_nodes, key=lambda n: (n["pos"][0], n["pos"][1])):
            above = by_column.get(node["pos"][0])
            if above is not None:
                gap = NODE_GAP if group_of.get(above["id"]) == group_of.get(node["id"]) else \
                    GROUP_SIDE + GROUP_GAP + GROUP_TOP - TITLE_HEIGHT
                lowest = above["pos"][1] + above["size"][1] + TITLE_HEIGHT + gap
                if node["pos"][1] < lowest:
                    node["pos"][1], moved = lowest, True
            by_column[node["pos"][0]] = node
        boxes = sorted(group_boxes(ui_nodes, groups).items(), key=lambda item: (item[1][1], item[1][0]))
        for upper_index, (_, upper) in enumerate(boxes):
            for title, lower in boxes[upper_index + 1:]:
                apart = lower[0] >= upper[0] + upper[2] or upper[0] >= lower[0] + lower[2]  # side by side
                shift = upper[1] + upper[3] + GROUP_GAP - lower[1]
                if not apart and shift > 0:
                    for node in ui_nodes:
                        if group_of.get(node["id"]) == title:
                            node["pos"][1] += shift
                    moved = True
                    break
            if moved:
                break
        if not moved:
            return
    raise RuntimeError("the layout did not settle")


def group_boxes(ui_nodes: list, groups: dict) -> dict:
    """Each group's box [left, top, width, height] around its nodes (title bars included)."""
    boxes = {}
    for title, members in groups.items():
        placed = [(n["pos"][0], n["pos"][1] - TITLE_HEIGHT, n["pos"][0] + n["size"][0], n["pos"][1] + n["size"][1])
                  for n in ui_nodes if n["id"] in members]
        left, top = min(b[0] for b in placed) - GROUP_SIDE, min(b[1] for b in placed) - GROUP_TOP + TITLE_HEIGHT
        right, bottom = max(b[2] for b in placed) + GROUP_SIDE, max(b[3] for b in placed) + GROUP_SIDE
        boxes[title] = (left, top, right - left, bottom - top)
    return boxes


def _type_of(workflow: Workflow, node_id: int) -> str:
    return next(n.type for n in workflow.nodes if n.id == node_id)


def _display(node: Node) -> str:
    from unidit.host.run import standalone_display_names

    return standalone_display_names().get(node.type, node.type)


def example_input_pngs() -> dict:
    """The example inputs, toy-world renders from the rig's front camera (what image -> 3D expects): a red cube
    on grey, and the same cube at the end of a move to the right (the last frame for first_last_frame); four
    views a quarter turn apart of a purple cylinder (the frames of turntable_to_mesh); and the depth map of a
    large torus tilted towards the camera, as UniDiT Control takes it (depth_control)."""
    from unidit.runtime.control import depth_image
    from unidit.runtime.media.image import encode_png
    from unidit.runtime.train.toyworld import Scene, ToyWorldConfig, render_images, render_videos, render_views

    start = Scene("cube", "red", "medium", "grey", yaw=0.6)
    moved = Scene("cube", "red", "medium", "grey", yaw=0.6, motion="translate", direction="right", amount=0.35)
    turntable = Scene("cylinder", "purple", "medium", "grey", yaw=0.3)  # seen by the four rig cameras, in order
    views = render_views([turntable], ToyWorldConfig()).rgb[0]
    torus = render_images([Scene("torus", "green", "large", "black", yaw=0.4, tilt=0.9)])
    depth = depth_image(torus.depth[:, None], torus.alpha[:, None])[0, 0]
    return {"unidit_example.png": encode_png(render_images([start]).rgb[0]),
            "unidit_example_end.png": encode_png(render_videos([moved]).rgb[0, -1]),
            **{f"unidit_turntable_{index}.png": encode_png(view) for index, view in enumerate(views)},
            "unidit_depth_example.png": encode_png(depth[..., None].expand(-1, -1, 3))}


def rendered_files() -> dict:
    """{path relative to the repository: bytes} of everything this script writes."""
    from unidit.host.run import standalone_nodes

    nodes = standalone_nodes()
    files = {}
    for workflow in examples():
        ui, api = build(workflow, nodes)
        files[f"workflows/{TITLES[workflow.name]}.json"] = (json.dumps(ui, indent=2) + "\n").encode()
        files[f"workflows/api/{TITLES[workflow.name]}.json"] = (json.dumps(api, indent=2) + "\n").encode()
    for name, data in example_input_pngs().items():
        files[f"workflows/input/{name}"] = data
    return files


def main() -> int:
    for relative, data in rendered_files().items():
        path = ROOT / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        print(path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
