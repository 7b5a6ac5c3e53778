"""Draw alseg's fixed re-split of LabelMeFacade (all 945 images into pool / val / test) and
write it into alseg/data/splits/labelmefacade/. It was drawn once and committed; running
this again on the published data set writes the same lists (tests/data/test_labelmefacade.py
checks the drawing rule on the committed lists).

    python scripts/labelmefacade_split.py ../shared/data/labelmefacade
"""

from __future__ import annotations

import sys
from pathlib import Path

from alseg.data.labelmefacade import RESPLIT_DIR, write_resplit

if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    splits = write_resplit(Path(sys.argv[1]))
    print(", ".join(f"{k}: {len(v)}" for k, v in splits.items()), f"-> {RESPLIT_DIR}")
