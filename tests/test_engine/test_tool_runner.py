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


def test_known_harmless_notices_are_dropped_and_real_warnings_kept(
        toy_world, tmp_path, capsys):
    from mmengine.logging import print_log

    from pcm_plugin.cli.launch import build_runner
    cfg = toy_config(toy_world, str(tmp_path / 'work'), max_epochs=1)
    cfg.experiment_name = f'notices{id(tmp_path)}'
    runner = build_runner(cfg)
    capsys.readouterr()
    print_log('The prefix is not set in metric class COCOCaptionMetric.',
              logger='current', level=30)
    print_log('the disk is nearly full', logger='current', level=30)
    terminal = ''.join(capsys.readouterr())
    assert 'prefix is not set' not in terminal
    assert 'the disk is nearly full' in terminal
    with open(runner.logger.log_file) as f:
        assert 'prefix is not set' not in f.read()
