import torch

from unidit.runtime.sampling.noise import seeded_noise


def test_a_seeds_noise_does_not_depend_on_the_rest_of_the_batch():
    alone = seeded_noise([42], (4, 2, 8, 8))
    among_others = seeded_noise([7, 42, 1234567890123], (4, 2, 8, 8))
    assert torch.equal(among_others[1], alone[0])
    assert torch.equal(seeded_noise([42], (4, 2, 8, 8)), alone)
    assert not torch.equal(among_others[0], among_others[1])


def test_noise_is_standard_normal_and_accepts_64_bit_seeds():
    noise = seeded_noise([2 ** 64 - 1], (64, 64, 16))
    assert abs(float(noise.mean())) < 0.01 and abs(float(noise.std()) - 1) < 0.01
    assert seeded_noise([3], (2,), dtype=torch.float64).dtype == torch.float64
