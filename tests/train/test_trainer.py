import torch

from unidit.runtime.train.trainer import StageConfig, TrainingStage


def regression_problem():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.SiLU(), torch.nn.Linear(16, 1))
    target = torch.nn.Linear(4, 1)

    def step_fn(step, generator):
        x = torch.randn(32, 4, generator=generator)
        with torch.no_grad():
            y = target(x)
        return {"loss": torch.nn.functional.mse_loss(model(x), y)}

    return model, step_fn


def test_loss_falls_and_the_finished_stage_is_reused(tmp_path):
    model, step_fn = regression_problem()
    stage = TrainingStage("fit", {"model": model}, StageConfig(steps=150, learning_rate=1e-2, warmup_steps=10),
                          tmp_path, progress=False)
    history = stage.run(step_fn)
    first, last = sum(h["loss"] for h in history[:10]), sum(h["loss"] for h in history[-10:])
    assert last < 0.2 * first
    assert (tmp_path / "fit.done.safetensors").exists() and not (tmp_path / "fit.state.safetensors").exists()
    # Running the stage again loads the result instead of training.
    fresh, _ = regression_problem()
    again = TrainingStage("fit", {"model": fresh}, StageConfig(steps=150, learning_rate=1e-2), tmp_path,
                          progress=False)
    calls = []
    again.run(lambda step, generator: calls.append(step))
    assert calls == [] and len(again.history) == 150
    for a, b in zip(model.parameters(), fresh.parameters()):
        assert torch.equal(a, b)


def test_a_resumed_run_ends_exactly_where_an_uninterrupted_one_does(tmp_path):
    config = StageConfig(steps=40, learning_rate=1e-2, warmup_steps=5, checkpoint_every=15, ema_decay=0.9)
    model, step_fn = regression_problem()
    TrainingStage("whole", {"model": model}, config, tmp_path / "a", progress=False).run(step_fn)

    interrupted, step_fn_b = regression_problem()

    def crash_at_20(step, generator):
        if step == 20:
            raise KeyboardInterrupt
        return step_fn_b(step, generator)

    stage = TrainingStage("whole", {"model": interrupted}, config, tmp_path / "b", progress=False)
    try:
        stage.run(crash_at_20)
    except KeyboardInterrupt:
        pass
    assert (tmp_path / "b" / "whole.state.safetensors").exists()
    resumed, step_fn_c = regression_problem()  # a new process: fresh weights, then the checkpoint of step 15
    history = TrainingStage("whole", {"model": resumed}, config, tmp_path / "b", progress=False).run(step_fn_c)
    assert len(history) == 40 and history[14]["step"] == 15
    for a, b in zip(model.parameters(), resumed.parameters()):
        assert torch.equal(a, b)


def test_warmup_then_cosine_decay():
    config = StageConfig(steps=100, learning_rate=1.0, warmup_steps=10, final_lr_fraction=0.1)
    assert config.learning_rate_at(0) == 0.1 and config.learning_rate_at(9) == 1.0
    assert config.learning_rate_at(10) == 1.0
    assert abs(config.learning_rate_at(100) - 0.1) < 1e-9
    assert config.learning_rate_at(30) > config.learning_rate_at(60) > config.learning_rate_at(90)
