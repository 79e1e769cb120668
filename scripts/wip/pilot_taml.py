import time
from mlbook_utils import config
config.task_parallel_threads()
from mlbook_utils import taml, registry, data
tr=data.load_omniglot("train"); te=data.load_omniglot("test")
s=registry.settings_at(taml.OMNIGLOT_SETTINGS,"cpu", meta_steps=150, diag_tasks=64)
t=time.time()
net,h=taml.train_omniglot(s,0,"maml",tr,progress=False)
print("train",time.time()-t, h["steps_per_s"])
vals=[v.value for v in net.variables]
print(taml.diagnostics(net,vals,te,s))
import numpy as np
from mlbook_utils import maml
# Theil within batches of 8 on training tasks
