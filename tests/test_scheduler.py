import torch

from emocast.pipelines.conditioning import guide as guided
from emocast.pipelines.scheduler import RELEASED_SCHEDULER_KWARGS, initial_noise, make_generator, make_scheduler


def test_released_timesteps_trailing_40():
    s = make_scheduler()
    s.set_timesteps(40)
    assert s.timesteps.tolist() == list(range(999, 0, -25))  # 999, 974, ..., 24
    assert s.timesteps[-1].item() == 24


def test_released_settings():
    cfg = make_scheduler().config
    assert cfg.prediction_type == "v_prediction"
    assert cfg.rescale_betas_zero_snr and cfg.timestep_spacing == "trailing"
    assert cfg.beta_schedule == "linear" and cfg.beta_start == 0.00085 and cfg.beta_end == 0.012
    assert cfg.clip_sample is False and cfg.steps_offset == 1
    s = make_scheduler()
    assert s.alphas_cumprod[-1].item() == 0.0  # zero terminal SNR
    # spec §8.1: alpha-bar at t = 249 / 499 / 749 with linear betas after the rescale
    ab = s.alphas_cumprod
    assert abs(ab[249].item() - 0.556) < 2e-3 and abs(ab[499].item() - 0.143) < 2e-3
    assert abs(ab[749].item() - 0.013) < 2e-3


def test_v_prediction_step_formula():
    s = make_scheduler()
    s.set_timesteps(40)
    x = torch.randn(1, 4, 2, 3, 3, generator=torch.Generator().manual_seed(0))
    v = torch.randn(1, 4, 2, 3, 3, generator=torch.Generator().manual_seed(1))
    t = s.timesteps[3].item()
    ab, ab_prev = s.alphas_cumprod[t], s.alphas_cumprod[t - 25]
    x0 = ab.sqrt() * x - (1 - ab).sqrt() * v
    eps = ab.sqrt() * v + (1 - ab).sqrt() * x
    expected = ab_prev.sqrt() * x0 + (1 - ab_prev).sqrt() * eps
    got = s.step(v, t, x).prev_sample
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    # the last step goes to alpha-bar = 1: the output is the x0 estimate
    t = s.timesteps[-1].item()
    ab = s.alphas_cumprod[t]
    torch.testing.assert_close(s.step(v, t, x).prev_sample, ab.sqrt() * x - (1 - ab).sqrt() * v,
                               rtol=1e-5, atol=1e-5)


def test_overrides_do_not_leak():
    assert make_scheduler(timestep_spacing="leading").config.timestep_spacing == "leading"
    assert RELEASED_SCHEDULER_KWARGS["timestep_spacing"] == "trailing"


def test_noise_stream_continues_and_is_seeded():
    g = make_generator(42)
    a = initial_noise(g, (1, 4, 2, 4, 4), torch.float16, "cpu")
    b = initial_noise(g, (1, 4, 2, 4, 4), torch.float16, "cpu")
    assert a.dtype == torch.float16 and not torch.equal(a, b)  # continued stream, not re-seeded
    g2 = make_generator(42)
    assert torch.equal(initial_noise(g2, (1, 4, 2, 4, 4), torch.float16, "cpu"), a)
    assert initial_noise(make_generator(42), (1, 4, 2, 4, 4), torch.float32, "cpu").dtype == torch.float32


def test_guidance():
    out = torch.stack([torch.zeros(2), torch.ones(2)])
    torch.testing.assert_close(guided(out, 3.5), torch.full((1, 2), 3.5))
