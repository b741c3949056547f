"""The tools' runner keeps mmengine's start-up dump out of the terminal."""

from pcm_plugin.testing.toy_features import toy_config


def test_environment_and_config_go_to_the_log_file_only(toy_world, tmp_path,
                                                         capsys):
    from pcm_plugin.cli.launch import build_runner
    cfg = toy_config(toy_world, str(tmp_path / 'work'), max_epochs=1)
    cfg.experiment_name = f'quiet{id(tmp_path)}'
    runner = build_runner(cfg)
    out = capsys.readouterr()
    terminal = out.out + out.err
    assert 'Config:' not in terminal and 'System environment' not in terminal
    assert f'Environment and config: {runner.log_dir}' in terminal
    with open(runner.logger.log_file) as f:
        log = f.read()
    assert 'System environment' in log and 'Config:' in log
    assert 'PCMCaptioner' in log  # the config itself
