"""A Hydra task that returns a plain dict of metrics and feature paths (no result record): what any user's
task function may return to our sweeper. ``rankme = 10 + x`` gives known objective values."""
from pathlib import Path

import hydra
import numpy as np
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig


def write_features(run_dir: Path) -> dict:
    """Two separable blobs per split, saved as the readouts expect; paths relative to the run dir."""
    rng = np.random.default_rng(0)
    (run_dir / "features").mkdir(parents=True, exist_ok=True)
    paths = {}
    for split in ("train", "val", "test"):
        y = np.repeat([0, 1], 40)
        x = rng.normal(size=(80, 4)) + 4.0 * y[:, None]
        np.save(run_dir / "features" / f"{split}_backbone.npy", x)
        np.save(run_dir / "features" / f"{split}_labels.npy", y)
        paths[split] = {"backbone": f"features/{split}_backbone.npy", "labels": f"features/{split}_labels.npy"}
    return paths


@hydra.main(version_base="1.3", config_path="conf", config_name="plain_dict")
def main(cfg: DictConfig) -> dict:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    return {"rankme": 10.0 + float(cfg.x), "alpha": np.float64(1.5), "note": "plain dict",
            "features": write_features(run_dir)}


if __name__ == "__main__":
    main()
