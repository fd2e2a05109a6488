"""`python -m detection.eval detector=detector.pth [data_path=COCO_ROOT | val_images=DIR val_annotations=JSON]`

Evaluates a detector written by `python -m detection` (detector.pth or checkpoint.pth) with COCOeval,
bbox and segm; by default on the val split named in the file's config. Writes config.yaml,
{bbox,segm}_results.json and results.json into output_dir. Runs under torchrun too (sharded).
"""

import sys

from .cli import main_eval as main

if __name__ == "__main__":
    sys.exit(main())
