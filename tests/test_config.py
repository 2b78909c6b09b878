import dataclasses

import pytest

from losscmp.config import FIELD_NAMES, Origin, RunConfig, build_config
from losscmp.errors import ConfigError, ParameterError, SpecError


def test_defaults_run_three_losses_on_synthetic():
    config = build_config()
    assert config == RunConfig()
    assert config.losses == ["dice", "focal", "tversky"]
    assert config.dataset == "synthetic"


def test_flags_override_the_file_and_unset_flags_do_not(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("losses: [dice, {name: focal, gamma: 1}]\nepochs: 3\nbatch-size: 4\n")
    config = build_config(path, epochs=5, lr=None)
    assert config.losses == ["dice", "focal(gamma=1)"]
    assert (config.epochs, config.batch_size, config.lr) == (5, 4, RunConfig().lr)


def test_numbers_in_a_config_file_are_read_as_yaml_1_2_reads_them(tmp_path):
    """PyYAML (YAML 1.1) reads 1e-3 as text; a number option means the number."""
    path = tmp_path / "c.yaml"
    path.write_text("lr: 1e-3\nweight_decay: 5E-5\nfg_fraction: [2e-2, .1]\nepochs: 3\nout: 1e3\n")
    config = build_config(path)
    assert config.lr == 0.001 and config.weight_decay == 5e-5
    assert config.fg_fraction == [0.02, 0.1] and config.epochs == 3
    assert config.out == "1e3"  # a folder's name stays text


def test_parameters_in_a_config_file_may_be_written_1e_3_too(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "losses: [{name: focal, gamma: 5e-1, alpha: 2.5E-1}]\n"
        "dataset: {name: synthetic, fg_fraction: 5e-2}\n"
    )
    config = build_config(path)
    assert config.losses == ["focal(gamma=0.5,alpha=0.25)"]
    assert config.dataset == "synthetic(fg_fraction=0.05)"


def test_comma_strings_for_list_options():
    config = build_config(losses="dice,tversky(alpha=0.2,beta=0.8)", fg_fraction="0.01,0.1")
    assert config.losses == ["dice", "tversky(alpha=0.2,beta=0.8)"]
    assert config.fg_fraction == [0.01, 0.1]
    assert [spec.label for spec in config.dataset_specs()] == [
        "synthetic(fg_fraction=0.01)",
        "synthetic(fg_fraction=0.1)",
    ]


def test_stored_base_sits_under_file_and_flags():
    config = build_config(base={"epochs": 7, "seeds": 3}, seeds=2)
    assert (config.epochs, config.seeds) == (7, 2)


def test_the_options_a_config_file_gave_are_kept_with_the_file(tmp_path):
    """run.json keeps them (option_sources), so that a report names a file's key, not a flag
    the command line did not have; a resumed run keeps those it took from run.json."""
    path = tmp_path / "c.yaml"
    path.write_text("seeds: 1\nepochs: 3\nlr: 0.01\n")
    config = build_config(path, epochs=5)
    source = f"config file {path}"
    assert config.origins.file_sources() == {"seeds": source, "lr": source}
    assert build_config(epochs=5).origins.file_sources() == {}
    other = tmp_path / "d.yaml"
    other.write_text("lr: 0.02\n")
    stored = {"seeds": source, "lr": source, "epochs": source}
    resumed = build_config(other, base={"seeds": 1, "lr": 0.01, "epochs": 3}, seeds=2)
    # seeds: now a flag; lr: now the other file; epochs: still the stored run's, from its file
    assert resumed.origins.file_sources(stored) == {
        "epochs": source,
        "lr": f"config file {other}",
    }


def test_where_options_came_from_travels_with_the_config_but_is_no_option(tmp_path):
    """A copy made by replace() (the plan expanding 'all') still names a file's key; run.json,
    equality and the options a file may give know nothing of it."""
    path = tmp_path / "c.yaml"
    path.write_text("seeds: 2\n")
    config = build_config(path)
    copied = dataclasses.replace(config, losses=["dice"])
    assert copied.origins.name("seeds") == f"config file {path}: 'seeds'"
    assert "origins" not in config.to_dict() and "origins" not in FIELD_NAMES
    assert config == dataclasses.replace(config, origins=None)
    path.write_text("origins: {}\n")
    with pytest.raises(ConfigError, match="unknown option 'origins'"):
        build_config(path)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"epochs": -1}, "--epochs must be between 1 and 100000, got -1"),
        ({"batch_size": 0}, "--batch-size must be at least 1"),
        ({"image_size": 100}, "--image-size must be a multiple of 32"),
        ({"lr": 0.0}, "--lr must be a positive finite number"),
        ({"lr": float("inf")}, "--lr must be a positive finite number"),
        ({"out": ["a"]}, "--out must be a string"),
        ({"device": "gpu"}, "--device must be one of auto, cpu, cuda, mps"),
        ({"fg_fraction": "0.5,0.95"}, "values must lie in \\(0, 0.9\\)"),
        ({"fg_fraction": "0.1", "dataset": "pets"}, "applies to --dataset synthetic only"),
        ({"epochs": "many"}, "--epochs must be a whole number, got 'many'"),
    ],
)
def test_bad_values_are_parameter_errors(flags, message):
    with pytest.raises(ParameterError, match=message):
        build_config(**flags)


CHOICES_IN_CAPITALS = {
    "device": "CPU",
    "model": "Tiny",
    "encoder_weights": "ImageNet",
    "executor": "Local",
    "fuse": "ON",
    "tracking": "MLflow",
}
CHOICES_AS_LISTED = {
    "device": "cpu",
    "model": "tiny",
    "encoder_weights": "imagenet",
    "executor": "local",
    "fuse": "on",
    "tracking": "mlflow",
}


def test_a_choice_in_any_case_is_recorded_as_listed(tmp_path):
    """'--fuse ON' was refused (did you mean 'on'?) where '--losses Dice' is dice: a choice
    is the choice whatever its case, flag or config file, and run.json records it in lower
    case, so that runs combine and a resume compares like with like."""
    from_flags = build_config(**CHOICES_IN_CAPITALS)
    path = tmp_path / "c.yaml"
    path.write_text("".join(f"{key}: '{value}'\n" for key, value in CHOICES_IN_CAPITALS.items()))
    from_file = build_config(path)
    for config in (from_flags, from_file):
        assert {key: config.to_dict()[key] for key in CHOICES_AS_LISTED} == CHOICES_AS_LISTED
    assert from_flags == from_file == build_config(**CHOICES_AS_LISTED)


def test_a_choice_misspelt_in_capitals_is_still_refused():
    with pytest.raises(ParameterError, match="^--fuse must be one of auto, on, off, got 'ONN'"):
        build_config(fuse="ONN")
    with pytest.raises(ParameterError, match="^--model must be one of auto, tiny, small, medium"):
        build_config(model="Huge")


def test_bad_spec_is_reported():
    with pytest.raises(SpecError):
        build_config(losses="dice,focal(gamma=1")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("epochz: 3\n", "unknown option 'epochz' \\(did you mean 'epochs'\\?\\)"),
        ("losses: [dice\n", "is not valid YAML at line"),
        ("- dice\n", "must hold a mapping"),
        ("epochs: -2\n", "bad.yaml: 'epochs' must be between 1 and 100000, got -2"),
    ],
)
def test_bad_config_files(tmp_path, content, message):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises((ConfigError, ParameterError), match=message):
        build_config(path)


@pytest.mark.parametrize(
    ("written", "amp"),
    [("on", True), ('"on"', True), ("'off'", False), ('"Yes"', True), ('" false "', False)],
)
def test_amp_in_a_config_file_reads_yaml_s_words_for_true_and_false_quoted_too(
    tmp_path, written, amp
):
    """'amp: on' is YAML 1.1's true, and --amp works: 'amp: "on"' was refused ('must be
    true or false, got 'on'')."""
    path = tmp_path / "amp.yaml"
    path.write_text(f"amp: {written}\n")
    assert build_config(path).amp is amp


def test_a_config_file_s_value_is_shown_as_written_and_a_flag_s_over_it(tmp_path):
    """'weight_decay: -1' read as -1.0, which the message showed; a flag over the file's
    value is shown as the flag gave it, not as the file wrote what it replaced."""
    path = tmp_path / "wd.yaml"
    path.write_text("weight_decay: -1\nlr: 0\n")
    with pytest.raises(ParameterError) as refused:
        build_config(path, lr=1e-3)
    assert str(refused.value) == (
        f"config file {path}: 'weight_decay' must be a finite number >= 0, got -1"
    )
    with pytest.raises(ParameterError) as refused:
        build_config(path, lr=-1.0)
    assert str(refused.value) == "--lr must be a positive finite number, got -1.0"


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        build_config(tmp_path / "nope.yaml")


def test_shipped_configs_are_valid():
    for name in ("smoke", "synthetic"):
        config = build_config(f"configs/{name}.yaml")
        assert config.losses[:2] == ["dice", "focal"]


def test_encoder_weights_none_is_accepted():
    assert build_config(encoder_weights="none").encoder_weights is None
    assert build_config(encoder_weights="imagenet").encoder_weights == "imagenet"


def test_non_utf8_config_file(tmp_path):
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"\xff\xfe\x00losses")
    with pytest.raises(ConfigError, match="not a UTF-8 text file"):
        build_config(path)


def test_fg_fraction_is_bounded_by_the_generator_s_own_limit(monkeypatch):
    """config.py kept a copy of the bound, which a change to the generator's would miss."""
    from losscmp.data import synthetic

    assert build_config(fg_fraction="0.6").fg_fraction == [0.6]
    monkeypatch.setattr(synthetic, "MAX_FG_FRACTION", 0.5)
    with pytest.raises(ParameterError, match=r"values must lie in \(0, 0.5\), got 0.6"):
        build_config(fg_fraction="0.6")


def test_numbers_given_as_text_are_read_as_numbers():
    config = build_config(epochs="12", lr="1e-3", limit="5", jobs="2")
    assert (config.epochs, config.lr, config.limit, config.jobs) == (12, 1e-3, 5, 2)


@pytest.mark.parametrize(
    ("yaml", "flags", "message"),
    [
        ("epochs: 0\n", {}, "config file {file}: 'epochs' must be between 1 and 100000, got 0"),
        ("epochs: 0\n", {"epochs": "0"}, "^--epochs must be between 1 and 100000, got 0$"),
        ("epochs: 3\n", {"epochs": "abc"}, "^--epochs must be a whole number, got 'abc'$"),
        ("epochs: abc\n", {}, "config file {file}: 'epochs' must be a whole number, got 'abc'"),
        ("device: gpu\n", {}, "config file {file}: 'device' must be one of"),
        ("fuse: of\n", {}, "config file {file}: 'fuse' must be one of"),
    ],
)
def test_a_message_names_where_the_value_came_from(tmp_path, yaml, flags, message):
    import re

    path = tmp_path / "c.yaml"
    path.write_text(yaml)
    with pytest.raises(ParameterError, match=message.replace("{file}", re.escape(str(path)))):
        build_config(path, **flags)


def test_a_resumed_runs_bad_value_is_blamed_on_its_run_json():
    with pytest.raises(ParameterError, match="run.json is damaged: config: 'seeds' must be"):
        build_config(base={"seeds": 0})


def test_a_grid_given_over_a_files_rate_replaces_it(tmp_path):
    """--lr-grid over a config file's lr (or a resumed run's stored one) is no contradiction:
    only both in one place are refused (tests/test_bad_inputs.py)."""
    config_file = tmp_path / "config.yaml"
    config_file.write_text("lr: 0.01\n")
    config = build_config(config_file, lr_grid="1e-3,1e-2")
    assert config.lr_grid == [1e-3, 1e-2]
    resumed = build_config(base=config.to_dict())
    assert resumed.lr_grid == [1e-3, 1e-2]


@pytest.mark.parametrize("text", ["none", "None", "null", ""])
def test_none_for_an_optional_number_is_its_default(text):
    """--jobs none is 'auto', as the message for a bad value ('a whole number or none') says."""
    config = build_config(jobs=text, threads=text, limit=text)
    assert (config.jobs, config.threads, config.limit) == (None, None, None)


@pytest.mark.parametrize(
    ("yaml", "flags", "message"),
    [
        ("", {"ray_address": "10.0.0.1:6379"}, "--ray-address is read by --executor ray only"),
        ("ray_address: 10.0.0.1:6379\n", {}, "c.yaml: 'ray_address' is read by --executor ray"),
        ("", {"data_dir": "/data"}, "--data-dir is read by --dataset pets only, and this run's"),
        ("data_dir: /data\n", {}, "c.yaml: 'data_dir' is read by --dataset pets only"),
        # the flag beside a file's choice: the flag is what the run would drop
        ("dataset: pets\n", {"data_dir": "/d", "dataset": "synthetic"}, "--data-dir is read"),
        (
            "",
            {"data_dir": "/data", "dataset": "folder:/data"},
            "dataset is folder; give the folder as --dataset folder:PATH",
        ),
    ],
)
def test_an_option_the_run_would_not_read_is_refused(tmp_path, yaml, flags, message):
    path = tmp_path / "c.yaml"
    path.write_text(yaml or "{}\n")
    with pytest.raises(ParameterError, match=message):
        build_config(path, **flags)


@pytest.mark.parametrize(
    ("yaml", "flags"),
    [
        # a file's cluster, run locally this once by a flag
        ("executor: ray\nray_address: 10.0.0.1:6379\n", {"executor": "local"}),
        # a file's Pets folder, and a flag choosing another dataset
        ("dataset: pets\ndata_dir: /data\n", {"dataset": "synthetic"}),
        ("", {"executor": "ray", "ray_address": "10.0.0.1:6379"}),
        ("", {"dataset": "pets", "data_dir": "/data"}),
    ],
)
def test_an_option_left_over_under_a_more_specific_choice_passes(tmp_path, yaml, flags):
    path = tmp_path / "c.yaml"
    path.write_text(yaml or "{}\n")
    build_config(path, **flags)


def test_a_resumed_runs_stored_options_are_not_refused():
    stored = {"executor": "ray", "ray_address": "10.0.0.1:6379", "data_dir": "/d"}
    config = build_config(base=stored, executor="local")
    assert (config.ray_address, config.data_dir) == ("10.0.0.1:6379", "/d")


def test_a_resumed_runs_rates_that_print_alike_are_not_refused():
    """Runs recorded before --lr-grid refused rates that print alike (1e-3, 1.0000001e-3)
    trained them: their --resume called run.json damaged; the grid given now is refused."""
    stored = {"lr_grid": [1e-3, 1.0000001e-3]}
    assert build_config(base=stored).lr_grid == [1e-3, 1.0000001e-3]
    with pytest.raises(ParameterError, match="--lr-grid rates 0.001 and 0.0010000001 both"):
        build_config(lr_grid="1e-3,1.0000001e-3")


@pytest.mark.parametrize(("written", "mode"), [("on", "on"), ("off", "off"), ("'on'", "on")])
def test_fuse_on_or_off_in_a_config_file_is_read_as_written(tmp_path, written, mode):
    """YAML 1.1 (PyYAML's) reads an unquoted on/off as true/false: 'fuse: on' was refused as
    "'fuse' must be a string, got True"."""
    path = tmp_path / "c.yaml"
    path.write_text(f"fuse: {written}\n")
    assert build_config(path).fuse == mode


DRY_TINY = ["--dataset", "synthetic(n_train=8,n_val=4,n_test=4)", "--image-size", "32"]


@pytest.mark.parametrize(
    ("written", "epochs"),
    [
        ("010", 10),  # YAML 1.1 (PyYAML) reads a leading zero as octal: 8
        ("0_12", 12),  # and with an underscore: 10
        ("1e1", 10),  # YAML 1.1 reads it as text; a flag's --epochs 1e1 is 10
        ("'8'", 8),  # quoted: text, as a flag's is
    ],
)
def test_a_config_files_whole_numbers_mean_what_a_flag_would(cli, tmp_path, written, epochs):
    """A config file's number means what the same text means to its flag (and to YAML
    1.2): 'epochs: 010' trained 8 epochs, 'epochs: 1e1' was refused, '--epochs 1e1' not."""
    config = tmp_path / "c.yaml"
    config.write_text(f"epochs: {written}\n")
    out = tmp_path / "r"
    result = cli("run", "--config", config, *DRY_TINY, "--dry-run", "--out", out)
    assert result.exit_code == 0, result.output
    assert f"\n{epochs} epochs, batch 16" in result.output
    assert build_config(config).epochs == epochs
    assert not out.exists()


@pytest.mark.parametrize("written", ["1:30", "1:30.5", "0x10", "0b1010", "0o17", "-0x10"])
def test_a_config_files_number_a_flag_refuses_is_refused_as_text(cli, tmp_path, written):
    """YAML 1.1 reads 1:30 as 90 (base 60), 0x10 as 16 and 0b1010 as 10: '--epochs 0x10'
    is refused, so the same text in a file is too, in the same words."""
    config = tmp_path / "c.yaml"
    config.write_text(f"epochs: {written}\n")
    result = cli("run", "--config", config, *DRY_TINY, "--dry-run", "--out", tmp_path / "r")
    assert result.exit_code == 2
    assert result.stderr == (
        f"losscmp: error: config file {config}: 'epochs' must be a whole number, got '{written}'\n"
    )
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("written", ["2024", "010", "1.50", "1:30", "2024-01-01"])
def test_a_config_files_folder_name_is_kept_as_written(cli, tmp_path, monkeypatch, written):
    """'out: 2024' was refused ('must be a string, got 2024') and 'out: 010' named the
    folder 8: YAML reads them as numbers; 'out: 2024-01-01' was refused as
    'datetime.date(2024, 1, 1)', a date to YAML; a text option takes the text as written."""
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "c.yaml"
    config.write_text(f"out: {written}\n")
    result = cli("run", "--config", config, *DRY_TINY, "--dry-run")
    assert result.exit_code == 0, result.output
    assert f"results under {written}/" in result.output
    assert build_config(config).out == written


def test_a_fraction_sweep_flag_replaces_a_config_files_dataset_fraction(cli, tmp_path):
    """configs/smoke.yaml's dataset has its own fg_fraction; --fg-fraction sweeps over it,
    as a flag overrides a file (a sweep beside a fraction given in the same place is
    refused: tests/test_bad_inputs.py)."""
    config = tmp_path / "c.yaml"
    config.write_text("dataset: synthetic(fg_fraction=0.05,n_train=8,n_val=4,n_test=4)\n")
    result = cli("run", "--config", config, "--fg-fraction", "0.01,0.02", "--image-size", "32",
                 "--dry-run", "--out", tmp_path / "r")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "synthetic(fg_fraction=0.01,n_train=8,n_val=4,n_test=4)" in result.output
    assert "synthetic(fg_fraction=0.02,n_train=8,n_val=4,n_test=4)" in result.output
    assert "fg_fraction=0.05" not in result.output


def test_origins_tell_an_option_given_now_from_a_resumed_runs_and_a_default(tmp_path):
    """One owner of 'was this option set by this command': the runner's --amp note, the
    unread-option checks and Ray's advice on threads all ask Origins."""
    config = tmp_path / "c.yaml"
    config.write_text("epochs: 3\n")
    base = {"lr": 0.1, "epochs": 2, "batch_size": 4}
    origins = build_config(config, base=base, batch_size=8).origins
    assert [origins.origin(key) for key in ("seed", "lr", "epochs", "batch_size")] == [
        Origin.DEFAULT,
        Origin.RESUMED_RUN,
        Origin.CONFIG_FILE,
        Origin.FLAG,
    ]
    given = [origins.given_now(key) for key in ("seed", "lr", "epochs", "batch_size")]
    assert given == [False, False, True, True]


def _run_record(tmp_path, **config):
    """A run folder's run.json as the runner writes it: the resolved config (lr kept beside
    the grid that replaced it), the device and threads it resolved to."""
    import json

    from losscmp.results import SCHEMA_VERSION

    run_dir = tmp_path / "20260101-120000-ab12cd"
    run_dir.mkdir()
    record = {
        "schema_version": SCHEMA_VERSION,
        "config": {**RunConfig().to_dict(), "out": str(tmp_path), **config},
        "device": "cpu",
        "execution": {"executor": "local", "jobs": 1, "threads": 1, "fused": False},
    }
    (run_dir / "run.json").write_text(json.dumps(record, indent=2))
    return run_dir


def test_a_runs_run_json_as_config_file_plans_its_trials_again(cli, tmp_path):
    """run.json keeps lr beside its lr_grid, and a dataset's fg_fraction beside a sweep over
    it (a flag over a file's dataset): a file giving both is refused, its run.json is not,
    and its device and threads (which change the numbers) are those the run resolved to."""
    run_dir = _run_record(
        tmp_path,
        losses=["dice", "tversky(alpha=0.3,beta=0.7)"],
        dataset="synthetic(fg_fraction=0.05,n_train=8,n_val=4,n_test=4)",
        fg_fraction=[0.01, 0.02],
        lr_grid=[1e-05, 0.003],
        image_size=32,
        epochs=1,
        data_dir="elsewhere",  # a file's, under a flag's dataset that reads none
        ray_address="ray://far:10001",  # a file's, under --executor local
    )
    config = build_config(run_dir / "run.json")
    assert config.lr_grid == [1e-05, 0.003]
    assert (config.device, config.threads) == ("cpu", 1)
    assert config.dataset == "synthetic(n_train=8,n_val=4,n_test=4)"
    assert (config.data_dir, config.ray_address) == (None, None)
    result = cli("run", "--config", run_dir / "run.json", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "8 trials to train: 2 losses × 2 learning rates × 1 seed" in result.output
    assert f"results under {tmp_path}/ (a new run folder)" in result.output
    assert "executing: in this process, 1 thread" in result.output


def test_a_run_folder_given_as_config_file_names_its_run_json(cli, tmp_path):
    run_dir = _run_record(tmp_path)
    result = cli("run", "--config", run_dir, "--dry-run")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"losscmp: error: config file {run_dir} is a folder; give a YAML file (to run that "
        f"run again: --config {run_dir}/run.json; to finish it: --resume {run_dir})"
    )
    assert not (tmp_path / "results").exists()


COMMAS = "(a list is separated by commas: did you mean"


@pytest.mark.parametrize(
    ("flag", "value", "hint"),
    [
        ("--lr-grid", "1e-3 3e-3", f"{COMMAS} '1e-3,3e-3'?)"),
        ("--lr-grid", "[1e-3, 3e-3]", f"{COMMAS} '1e-3,3e-3'?)"),
        ("--fg-fraction", "0.01;0.02", f"{COMMAS} '0.01,0.02'?)"),
        ("--seeds", "0,1,2", "(--seeds is how many seeds, one after another from --seed: "
                             "--seeds 3 --seed 0)"),
        ("--seeds", "3,5", "(--seeds is how many seeds, one after another from --seed)"),
    ],
)  # fmt: skip
def test_a_list_written_otherwise_is_respelt(cli, tmp_path, flag, value, hint):
    """'--lr-grid "1e-3 3e-3"' said only 'must be numbers', and '--seeds 0,1,2' (seeds
    listed, not counted) only 'must be a whole number'."""
    out = tmp_path / "r"
    result = cli("run", flag, value, "--dry-run", "--out", out)
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"losscmp: error: {flag} must be ")
    assert line.endswith(f", got '{value}' {hint}")
    assert not out.exists()


def test_seeds_listed_in_a_config_file_are_said_in_its_keys(cli, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("seeds: [2, 3, 4]\n")
    result = cli("run", "--config", config, "--dry-run", "--out", tmp_path / "r")
    assert result.exit_code == 2
    assert result.stderr == (
        f"losscmp: error: config file {config}: 'seeds' must be a whole number, got [2, 3, 4] "
        "('seeds' is how many seeds, one after another from 'seed': seeds: 3, seed: 2)\n"
    )


def test_a_rate_or_fraction_flag_over_a_files_grid_says_which_flag_replaces_it(cli, tmp_path):
    """--lr over a file's lr_grid is refused ('give one'), yet no flag drops the file's
    grid: the line now says the flag that trains one rate over it (and likewise a dataset's
    fraction over a file's fg_fraction sweep)."""
    config = tmp_path / "grid.yaml"
    config.write_text("lr_grid: [1e-3, 3e-3]\nfg_fraction: [0.01, 0.02]\n")
    rate = cli("run", "--config", config, "--lr", "1e-2", "--dry-run", "--out", tmp_path / "r")
    assert rate.exit_code == 2
    assert rate.stderr.endswith(
        "give one (for one rate over the file's grid: --lr-grid 1e-2, not --lr)\n"
    )
    fraction = cli("run", "--config", config, "--dataset", "synthetic(fg_fraction=0.03,n_train=8)",
                   "--dry-run", "--out", tmp_path / "r")  # fmt: skip
    assert fraction.exit_code == 2
    assert fraction.stderr.endswith(
        "give one (for one fraction over the file's sweep: --dataset 'synthetic(n_train=8)' "
        "--fg-fraction 0.03)\n"
    )
    assert not (tmp_path / "r").exists()


def test_a_yaml_flow_list_keeps_a_specs_parameters_together(tmp_path):
    """YAML splits [a, b] at every comma, those between parentheses too: the file's
    'tversky(alpha=0.3,beta=0.7)' read as 'tversky(alpha=0.3' (must end with ')')."""
    path = tmp_path / "c.yaml"
    path.write_text("losses: [dice, tversky(alpha=0.3, beta=0.7), focal(gamma=1)]\n")
    assert build_config(path).losses == ["dice", "tversky(alpha=0.3,beta=0.7)", "focal(gamma=1)"]
    path.write_text("losses: [dice, tversky(alpha=0.3, beta=0.7]\n")
    with pytest.raises(SpecError, match=r"'tversky\(alpha=0.3,beta=0.7' must end with '\)'"):
        build_config(path)


def test_none_drops_a_config_files_grid_or_sweep(cli, tmp_path):
    """A file's lr_grid or fg_fraction could be overridden by another list but not dropped:
    '--lr-grid none' was 'must be numbers', where '--jobs none' is the default."""
    config = tmp_path / "grid.yaml"
    config.write_text(
        "lr_grid: [1e-3, 3e-3]\nfg_fraction: [0.01, 0.02]\n"
        "dataset: synthetic(fg_fraction=0.05,n_train=8,n_val=4,n_test=4)\n"
    )
    assert build_config(config, lr_grid="none", fg_fraction="None").lr_grid is None
    result = cli("run", "--config", config, "--lr-grid", "none", "--lr", "1e-2",
                 "--fg-fraction", "none", "--image-size", "32", "--dry-run",
                 "--out", tmp_path / "r")  # fmt: skip
    assert result.exit_code == 0, result.output
    dataset = "synthetic(fg_fraction=0.05,n_train=8,n_val=4,n_test=4)"  # its own fraction
    assert f"3 trials to train: 3 losses × 1 learning rate × 1 seed on {dataset}" in result.output
    assert "│ 0.01 │" in result.output


def test_build_config_names_an_unknown_option_from_python():
    """A notebook's misspelt keyword is one clear error with a did-you-mean, not a KeyError."""
    meant = r"unknown option 'lossses' \(did you mean 'losses'\?\)"
    with pytest.raises(ParameterError, match=meant):
        build_config(losses="dice", lossses="bce")
