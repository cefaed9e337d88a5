"""What runs inside the sandbox, beside the submission's code: the worker loop, its data codec, the
implementation loader, the notebook driver and the child end of the report channel. It imports nothing
from the rest of the kit (tests/kit/test_layout.py), and it is all the kit a sandbox holds."""
