"""The toy world: seeded scenes and captions, exact geometry, readable colours, consistent views and videos, and
ground-truth Gaussians that render back to the views."""
import math

import pytest
import torch
from scipy import ndimage

from unidit.runtime.gaussians.render import RenderConfig, render
from unidit.runtime.train import toyworld as tw

# One of each shape, in poses and on backgrounds that differ.
POSED = [
    tw.Scene("sphere", "red", "large", "grey", yaw=0.3),
    tw.Scene("cube", "blue", "medium", "white", yaw=0.5),
    tw.Scene("cylinder", "green", "small", "black", yaw=1.0),
    tw.Scene("cone", "yellow", "large", "light grey", yaw=2.0),
    tw.Scene("torus", "pink", "medium", "grey", yaw=0.4, tilt=0.8),
]


def psnr(a, b):
    return -10.0 * torch.log10(((a - b) ** 2).mean(dim=(-3, -2, -1)))


def alpha_centroid(alpha):
    """(u, v) centre of coverage of images [..., H, W], in pixel units."""
    height, width = alpha.shape[-2:]
    u = torch.arange(width, dtype=alpha.dtype) + 0.5
    v = torch.arange(height, dtype=alpha.dtype) + 0.5
    total = alpha.sum(dim=(-2, -1))
    return (alpha * u).sum(dim=(-2, -1)) / total, (alpha * v[:, None]).sum(dim=(-2, -1)) / total


# ---- sampling and captions --------------------------------------------------------------------------------------

def test_same_seed_gives_the_same_scenes_captions_and_pixels():
    def world(seed):
        generator = torch.Generator().manual_seed(seed)
        scenes = tw.sample_scenes(12, generator, with_motion=True)
        return scenes, [tw.caption(scene, generator) for scene in scenes], tw.render_images(scenes).rgb

    scenes, captions, pixels = world(3)
    again = world(3)
    other = world(4)
    assert scenes == again[0] and captions == again[1] and torch.equal(pixels, again[2])
    assert scenes != other[0] and captions != other[1] and not torch.equal(pixels, other[2])


def test_captions_name_the_scene_in_known_words():
    generator = torch.Generator().manual_seed(0)
    vocabulary = set(tw.vocabulary())
    scenes = tw.sample_scenes(1000, generator) + tw.sample_scenes(1000, generator, with_motion=True)
    captions = [tw.caption(scene, generator) for scene in scenes]
    for scene, text in zip(scenes, captions):
        assert set(text.split()) <= vocabulary, text
        read = tw.parse_caption(text)
        assert (read["colour"], read["shape"]) == (scene.colour, scene.shape), text
        assert read.get("size", "medium") == scene.size, text
        assert read.get("background", scene.background) == scene.background, text
        assert read.get("motion") == scene.motion and read.get("direction") == scene.direction, text
    assert len(set(captions)) > 1500  # varied phrasing
    assert sum("medium" in text for text in captions) < 0.15 * len(captions)
    named = sum("background" in text or " on " in text for text in captions) / len(captions)
    assert named == pytest.approx(tw.BACKGROUND_STATED, abs=0.05)


def test_scenes_for_a_caption_show_what_it_names_and_draw_the_rest():
    generator = torch.Generator().manual_seed(4)
    for text in ("a huge crimson ball moving left on black", "a spinning teal ring", "a bouncing green cylinder",
                 "a purple cone"):
        asked = tw.parse_caption(text)
        scenes = tw.scenes_for_caption(text, 6, generator)
        assert len(scenes) == 6
        for scene in scenes:
            assert {key: getattr(scene, key) for key in asked} == asked, (text, scene)
            assert (scene.amount != 0.0) == ("motion" in asked)
        assert len({scene.yaw for scene in scenes}) == 6                       # the pose is drawn
    assert {s.size for s in tw.scenes_for_caption("a red cube", 40, generator)} == set(tw.SIZES)
    with pytest.raises(ValueError, match="colour and a shape"):
        tw.scenes_for_caption("a dog running", 1, generator)


def test_held_out_pairs_are_never_sampled_unless_asked_for():
    generator = torch.Generator().manual_seed(1)
    training = {(s.colour, s.shape) for s in tw.sample_scenes(2000, generator, with_motion=True)}
    assert not training & set(tw.HELD_OUT_PAIRS)
    assert len(training) == len(tw.COLOURS) * len(tw.SHAPES) - len(tw.HELD_OUT_PAIRS)
    everything = {(s.colour, s.shape) for s in tw.sample_scenes(2000, generator, include_held_out=True)}
    assert set(tw.HELD_OUT_PAIRS) <= everything


def test_motions_spin_only_shapes_whose_spin_shows_and_stay_in_range():
    scenes = tw.sample_scenes(500, torch.Generator().manual_seed(2), with_motion=True)
    assert {s.motion for s in scenes} == set(tw.MOTIONS)
    assert {s.shape for s in scenes if s.motion == "rotate"} == set(tw.ROTATING_SHAPES)
    assert {s.direction for s in scenes if s.motion == "translate"} == set(tw.DIRECTIONS)
    assert all(abs(s.amount) <= tw.TRANSLATE_DISTANCE[1] for s in scenes if s.motion == "translate")
    with pytest.raises(ValueError, match="unknown colour 'mauve'"):
        tw.Scene("cube", "mauve")
    with pytest.raises(ValueError, match="direction"):
        tw.Scene("cube", "red", motion="translate")


# ---- colour -----------------------------------------------------------------------------------------------------

def test_every_colour_reads_back_on_every_background_and_background_pixels_are_exact():
    scenes = [tw.Scene(shape, colour, "small", background, yaw=0.7, tilt=0.8 if shape == "torus" else 0.0)
              for colour in tw.COLOURS for background, shape in zip(tw.BACKGROUNDS, ("cube", "torus", "cone",
                                                                                        "sphere"))]
    images = tw.render_images(scenes)
    for scene, rgb, alpha in zip(scenes, images.rgb, images.alpha):
        assert tw.dominant_colour(rgb) == scene.colour
        assert tw.dominant_colour(rgb, alpha == 1) == scene.colour
        assert torch.all(rgb[alpha == 0] == tw.BACKGROUNDS[scene.background])
    for name, albedo in tw.COLOURS.items():  # shading scales the colour: darkest and brightest read the same
        for shade in (tw.AMBIENT, 0.6, 1.0):
            assert tw.classify_colour([shade * c for c in albedo]) == name
        assert tw.classify_colour([0.5 * c + 0.3 for c in albedo]) == name  # half covered, over a grey
    assert tw.classify_colour([0.4, 0.4, 0.41]) is None
    assert tw.dominant_colour(torch.full((8, 8, 3), 0.5)) is None


# ---- geometry ---------------------------------------------------------------------------------------------------

def test_sphere_depth_is_the_analytic_ray_sphere_depth():
    scene = tw.Scene("sphere", "red", "large")
    images = tw.render_images([scene])
    camera = tw.ToyWorldConfig().front_camera().to(dtype=torch.float64)
    origins, directions = camera.pixel_rays()
    radius = tw.SPHERE_RADIUS * tw.SIZES["large"]
    b = (origins * directions).sum(-1)
    discriminant = b * b - ((origins * origins).sum(-1) - radius ** 2)
    distance = -b - torch.sqrt(discriminant.clamp_min(0))
    forward = camera.rotation[0, 2]
    expected = (distance * (directions @ forward))[0]
    hit = (discriminant > 0)[0]
    assert torch.equal(images.centre_hit[0], hit)
    relative = ((images.depth[0] - expected).abs() / expected)[hit]
    assert relative.max() < 1e-4
    assert torch.all(images.depth[0][images.alpha[0] == 0] == 0)


def test_unprojected_depth_lies_on_the_surface_of_every_shape_in_every_view():
    views = tw.render_views(POSED)
    points = views.cameras.unproject(views.depth)  # [N, V, H, W, 3]
    distance = tw.signed_distance(POSED, points)
    surface = views.centre_hit
    assert surface.sum(dim=(1, 2, 3)).min() > 500
    assert distance[surface].abs().max() < 1e-3
    # Normals are unit, and point out of the object: towards the camera.
    normals = views.normals[surface]
    assert torch.allclose(normals.norm(dim=-1), torch.ones(len(normals)), atol=1e-5)
    _, directions = views.cameras.pixel_rays()
    facing = (views.normals * directions).sum(-1)[surface]
    assert facing.max() < 1e-3


def test_torus_silhouette_agrees_with_a_dense_march_along_each_ray():
    scene = tw.Scene("torus", "red", "large", yaw=0.6, tilt=0.6)
    views = tw.render_views([scene], tw.ToyWorldConfig(resolution=40, supersample=1))
    origins, directions = views.cameras.to(dtype=torch.float64).pixel_rays()
    steps = torch.linspace(1.0, 3.0, 2001, dtype=torch.float64)
    samples = origins[..., None, :] + steps[:, None] * directions[..., None, :]  # [V, H, W, S, 3]
    distance = tw.signed_distance([scene], samples.float()[None])[0]
    assert torch.equal(views.centre_hit[0], (distance < 0).any(dim=-1))


def test_silhouettes_differ_between_shapes_cone_points_up_and_torus_shows_its_hole():
    scenes = [tw.Scene(shape, "red", yaw=0.4, tilt=math.radians(30) if shape == "torus" else 0.0)
              for shape in tw.SHAPES]
    masks = tw.render_images(scenes).alpha > 0.5
    for i in range(len(scenes)):
        for j in range(i):
            iou = (masks[i] & masks[j]).sum() / (masks[i] | masks[j]).sum()
            assert iou < 0.9, (scenes[i].shape, scenes[j].shape, float(iou))
    rows = masks[3].any(dim=1).nonzero().squeeze(1)  # the cone: narrow at the top of the image, wide below
    top, bottom = rows.min(), rows.max()
    height = bottom - top
    assert masks[3][top + height // 10].sum() < 0.35 * masks[3][top + 3 * height // 4].sum()
    # The torus, tilted the least and yawed the most the sampler allows, still shows background in its hole.
    for yaw in (-tw.TORUS_YAW, tw.TORUS_YAW):
        torus = tw.render_images([tw.Scene("torus", "red", tilt=tw.TORUS_TILT[0], yaw=yaw)]).alpha[0] > 0
        assert (torch.from_numpy(ndimage.binary_fill_holes(torus.numpy())) & ~torus).sum() >= 4


def bilinear(image, u, v):
    """Sample images [H, W, ...] at pixel coordinates (u, v) [M] (pixel centres at j + 0.5): values [M, ...]
    and whether the four pixels around lie inside the image."""
    height, width = image.shape[:2]
    x, y = u - 0.5, v - 0.5
    j, i = x.floor().long(), y.floor().long()
    inside = (j >= 0) & (i >= 0) & (j < width - 1) & (i < height - 1)
    j, i = j.clamp(0, width - 2), i.clamp(0, height - 2)
    fx, fy = x - j, y - i
    if image.ndim == 3:
        fx, fy = fx[:, None], fy[:, None]
    top = image[i, j] * (1 - fx) + image[i, j + 1] * fx
    bottom = image[i + 1, j] * (1 - fx) + image[i + 1, j + 1] * fx
    return top * (1 - fy) + bottom * fy, inside


def test_a_point_seen_in_one_view_has_the_same_depth_and_colour_in_the_next():
    views = tw.render_views(POSED)
    cameras = views.cameras
    for n, scene in enumerate(POSED):
        for first, second in ((0, 1), (1, 2), (2, 3), (3, 0)):
            surface = views.centre_hit[n, first]
            points = cameras[first].unproject(views.depth[n, first:first + 1])[0][surface]
            normals, colours = views.normals[n, first][surface], views.colour[n, first][surface]
            to_camera = cameras.centers()[second] - points
            facing = (to_camera * normals).sum(-1) / to_camera.norm(dim=-1) > 0.3  # not grazing in the second
            pixels, z = cameras[second].project(points)
            u, v = pixels[0].unbind(-1)
            hit_around, inside = bilinear(views.centre_hit[n, second].float(), u, v)
            normal_around, _ = bilinear(views.normals[n, second], u, v)
            # Neither a silhouette nor a crease between the four pixels around.
            usable = facing & inside & (hit_around == 1) & ((normal_around * normals).sum(-1) > 0.99)
            seen_depth, _ = bilinear(views.depth[n, second], u, v)
            seen_colour, _ = bilinear(views.colour[n, second], u, v)
            # What the second view sees there is the point, or (on the torus) a surface in front of it. The
            # tolerance covers interpolating a curved depth map.
            visible = usable & ((seen_depth - z[0]).abs() < 0.01)
            assert torch.all(seen_depth[usable] < z[0][usable] + 0.01), (scene.shape, first, second)
            assert usable.sum() > 50 and visible.sum() > (0.6 if scene.shape == "torus" else 0.95) * usable.sum()
            difference = (seen_colour - colours).abs().amax(-1)[visible]
            # Shading is view independent: colours differ only by interpolation over the torus's tight curves.
            assert difference.median() < 0.01 and difference.quantile(0.9) < 0.04, (scene.shape, first, second)


# ---- video ------------------------------------------------------------------------------------------------------

def test_videos_start_at_the_still_image_and_move_as_captioned():
    scenes = [tw.Scene("sphere", "green", "small", motion="translate", direction=direction, amount=0.35)
              for direction in ("left", "right", "up", "down")]
    scenes += [tw.Scene("cube", "blue", yaw=0.3, motion="rotate", amount=1.5),
               tw.Scene("cone", "orange", "small", motion="bounce", amount=0.3)]
    videos = tw.render_videos(scenes)
    still = tw.render_images(scenes)
    assert torch.allclose(videos.rgb[:, 0], still.rgb, atol=1e-6)
    u, v = alpha_centroid(videos.alpha)  # [N, T]
    step_u, step_v = u.diff(dim=1), v.diff(dim=1)
    assert torch.all(step_u[0] < -0.5) and torch.all(step_u[1] > 0.5)   # left: u decreases; right: increases
    assert torch.all(step_v[2] < -0.5) and torch.all(step_v[3] > 0.5)   # up: v decreases; down: increases
    assert torch.all(step_v[0].abs() < 0.05) and torch.all(step_u[2].abs() < 0.05)
    spin = (videos.rgb[4, 1:] - videos.rgb[4, :-1]).abs().mean(dim=(1, 2, 3))
    assert torch.all(spin > 0.005)
    hop = v[5] - v[5, 0]  # one hop: up to the middle frame, back to the ground at the last, symmetric in time
    assert hop[4] < -8 and hop[4] == hop.min() and abs(hop[8]) < 1e-3
    assert torch.allclose(hop, hop.flip(0), atol=0.05)
    rise = -hop[:5].diff()  # under gravity: each step up shorter than the one before
    assert torch.all(rise > 0) and torch.all(rise[1:] < rise[:-1])
    for scene, frames in zip(scenes, videos.rgb):
        assert {tw.dominant_colour(frame) for frame in frames} == {scene.colour}
    for scene, colour, alpha in zip(scenes, videos.colour, videos.alpha):  # every object pixel keeps its hue
        hue, _ = tw.hue_and_chroma(colour[alpha > 0])
        expected, _ = tw.hue_and_chroma(torch.tensor(tw.COLOURS[scene.colour]))
        assert (hue - expected).abs().max() < 0.1


# ---- ground-truth Gaussians -------------------------------------------------------------------------------------

def test_splatter_targets_sit_on_the_surface_and_render_back_to_every_view():
    views = tw.render_views(POSED)
    targets = tw.splatter_targets(views)
    assert torch.equal(targets.valid, views.alpha > 0)
    assert torch.equal(targets.opacities[..., 0], views.alpha)
    on_surface = tw.signed_distance(POSED, targets.positions)[views.centre_hit]
    assert on_surface.abs().max() < 1e-3
    assert torch.allclose(targets.rotations.norm(dim=-1), torch.ones(()), atol=1e-5)
    footprint = views.depth / views.cameras.fx[:, None, None]
    assert torch.allclose(targets.scales[..., 0], tw.SURFEL_SCALE * footprint)

    # The Gaussians of all four views, rendered together by the splat renderer at each view (2 x 2 rays per
    # pixel, as the toy world antialiases), against the toy world's own render of that view.
    rendered = []
    for n, scene in enumerate(POSED):
        grey = tw.BACKGROUNDS[scene.background]
        fine = render(targets.splats(n), views.cameras.resized(128, 128), RenderConfig(background=(grey,) * 3))
        rendered.append(torch.nn.functional.avg_pool2d(fine.color.permute(0, 3, 1, 2), 2).permute(0, 2, 3, 1))
    quality = psnr(torch.stack(rendered), views.rgb)  # [N, V] dB
    assert quality.mean() > 25.0 and quality.min() > 21.0, quality


# ---- frame sizes, motion mixture, training augmentation ---------------------------------------------------------

def test_wider_and_taller_frames_show_the_same_object_with_more_around_it():
    scene = [tw.Scene("cone", "yellow", "large", "grey", yaw=2.0)]
    square = tw.render_images(scene, tw.ToyWorldConfig.sized(64, 64)).rgb[0]
    wide = tw.render_images(scene, tw.ToyWorldConfig.sized(96, 64)).rgb[0]
    tall = tw.render_images(scene, tw.ToyWorldConfig.sized(64, 96)).rgb[0]
    assert wide.shape == (64, 96, 3) and tall.shape == (96, 64, 3)
    assert torch.allclose(wide[:, 16:80], square, atol=1e-3)      # the field of view spans the shorter side
    assert torch.allclose(tall[16:80], square, atol=1e-3)
    assert tw.ToyWorldConfig.sized(96, 64).size == (96, 64) and tw.ToyWorldConfig.sized(48, 48).width == 0


def test_motions_are_drawn_by_their_weights():
    scenes = tw.sample_scenes(4000, torch.Generator().manual_seed(5), with_motion=True, subject=("red", "cube"))
    counts = {m: sum(s.motion == m for s in scenes) / len(scenes) for m in tw.MOTIONS}
    for motion, weight in tw.MOTION_WEIGHTS.items():
        assert counts[motion] == pytest.approx(weight, abs=0.03), counts
    spheres = tw.sample_scenes(2000, torch.Generator().manual_seed(5), with_motion=True, subject=("red", "sphere"))
    share = sum(s.motion == "translate" for s in spheres) / len(spheres)
    expected = tw.MOTION_WEIGHTS["translate"] / (tw.MOTION_WEIGHTS["translate"] + tw.MOTION_WEIGHTS["bounce"])
    assert share == pytest.approx(expected, abs=0.03)


def test_captions_name_the_background_mostly_and_never_when_told_not_to():
    generator = torch.Generator().manual_seed(6)
    scenes = tw.sample_scenes(400, generator)
    named = [tw.parse_caption(tw.caption(s, generator)).get("background") for s in scenes]
    assert sum(n is not None for n in named) / len(named) == pytest.approx(tw.BACKGROUND_STATED, abs=0.06)
    assert all(n in (None, s.background) for n, s in zip(named, scenes))
    assert all("background" not in tw.parse_caption(tw.caption(s, generator, background=False)) for s in scenes)
