import torch

from unidit.runtime.model.rope import apply_rope, axis_dims, grid_positions, rope_rotations


def scores_at(q, k, query_position, key_position, head_dim=64):
    positions = torch.tensor([query_position, key_position])
    rotations = rope_rotations(positions, head_dim)
    q_rot = apply_rope(q[None], rotations[:, :1])[0]
    k_rot = apply_rope(k[None], rotations[:, 1:])[0]
    return float(q_rot.double() @ k_rot.double())


def test_head_split_is_quarter_three_eighths_three_eighths():
    assert axis_dims(64) == (16, 24, 24)
    assert axis_dims(128) == (32, 48, 48)


def test_scores_depend_only_on_relative_position_along_each_axis():
    generator = torch.Generator().manual_seed(0)
    q = torch.randn(64, generator=generator)
    k = torch.randn(64, generator=generator)
    base = scores_at(q, k, (1, 2, 3), (4, 0, 7))
    for shift in [(5, 0, 0), (0, 9, 0), (0, 0, 11), (3, 7, 2)]:
        moved_q = tuple(a + s for a, s in zip((1, 2, 3), shift))
        moved_k = tuple(a + s for a, s in zip((4, 0, 7), shift))
        assert abs(scores_at(q, k, moved_q, moved_k) - base) < 1e-4
    # ...and it does depend on the offset along every axis.
    for other_key in [(5, 0, 7), (4, 1, 7), (4, 0, 8)]:
        assert abs(scores_at(q, k, (1, 2, 3), other_key) - base) > 1e-2


def test_rotation_preserves_norm_and_identity_at_origin():
    x = torch.randn(2, 3, 12, 32)
    rotated = apply_rope(x, rope_rotations(grid_positions(3, 2, 2), 32))
    assert torch.allclose(rotated.norm(dim=-1), x.norm(dim=-1), atol=1e-5)
    assert torch.equal(rotated[..., 0, :], x[..., 0, :])  # position (0, 0, 0) is not rotated


def test_grid_positions_are_frame_major():
    positions = grid_positions(2, 2, 3)
    assert positions[:4].tolist() == [[0, 0, 0], [0, 0, 1], [0, 0, 2], [0, 1, 0]]
    assert positions[6].tolist() == [1, 0, 0]


def test_rotations_are_float32_and_real_so_every_device_takes_them():
    rotations = rope_rotations(grid_positions(4, 3, 5), 64)
    assert rotations.dtype == torch.float32 and rotations.shape == (2, 60, 32)
    angles = torch.atan2(rotations[1], rotations[0])
    assert torch.allclose(angles[1, :4], torch.tensor([0.0, 0.0, 0.0, 0.0]))            # (0, 0, 1): x only
    assert torch.allclose(angles[15, 0], torch.tensor(1.0))                              # frame 1, first pair
