import math

import pytest
import torch

from unidit.runtime.gaussians.sh import eval_sh, rgb_to_sh0, sh0_to_rgb, sh_degree_of
from unidit.runtime.gaussians.shapes import sphere_points


def test_basis_is_orthonormal_on_the_sphere():
    # With one-hot coefficients eval_sh returns one basis function; a dense even quadrature of products must
    # give the identity: this checks every constant and every polynomial of degrees 0-3.
    directions = sphere_points(20000).double()
    one_hot = torch.eye(16, dtype=torch.float64)[:, :, None].expand(16, 16, 3)
    values = torch.stack([eval_sh(one_hot[k].expand(20000, 16, 3), directions)[:, 0] for k in range(16)])
    gram = values @ values.T * (4 * math.pi / 20000)
    assert torch.allclose(gram, torch.eye(16, dtype=torch.float64), atol=2e-3)


def test_lower_degrees_use_the_leading_coefficients():
    directions = torch.nn.functional.normalize(torch.randn(30, 3), dim=-1)
    sh = torch.randn(30, 16, 3)
    for degree, count in ((0, 1), (1, 4), (2, 9)):
        truncated = sh.clone()
        truncated[:, count:] = 0
        assert torch.allclose(eval_sh(sh[:, :count], directions), eval_sh(truncated, directions), atol=1e-6)


def test_band_zero_round_trip_and_degree_names():
    rgb = torch.rand(10, 3)
    assert torch.allclose(sh0_to_rgb(rgb_to_sh0(rgb)), rgb, atol=1e-6)
    assert [sh_degree_of(k) for k in (1, 4, 9, 16)] == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="not a full basis"):
        sh_degree_of(7)
