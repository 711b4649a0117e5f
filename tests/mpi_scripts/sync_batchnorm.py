"""Run under mpiexec: SyncBatchNorm2d on shards must equal BatchNorm2d on the whole batch.

Exits non-zero (on every rank) if outputs, input gradients, parameter gradients or running statistics
differ from one process seeing the whole batch.
"""

import sys

import numpy as np
import torch
from torch import nn

from diffnet.parallel import convert_sync_batchnorm, shard_bounds, world

comm = world()
torch.manual_seed(0)
batch = 7  # uneven over 2 ranks on purpose
x_all = torch.randn(batch, 5, 6, 4, dtype=torch.float64) * 3 + 1
w_out = torch.randn(batch, 5, 6, 4, dtype=torch.float64)

reference = nn.BatchNorm2d(5).double()
with torch.no_grad():
    reference.weight.uniform_(0.5, 1.5)
    reference.bias.uniform_(-0.5, 0.5)
sync = convert_sync_batchnorm(nn.Sequential(nn.BatchNorm2d(5).double()), comm)
sync.load_state_dict({f"0.{k}": v for k, v in reference.state_dict().items()})

x_ref = x_all.clone().requires_grad_(True)
y_ref = reference(x_ref)
(y_ref * w_out).sum().backward()

lo, hi = shard_bounds(batch, comm.rank, comm.size)
x_loc = x_all[lo:hi].clone().requires_grad_(True)
y_loc = sync(x_loc)
(y_loc * w_out[lo:hi]).sum().backward()
grads = torch.cat([sync[0].weight.grad, sync[0].bias.grad]).numpy().copy()
comm.allreduce_sum_(grads)

checks = {
    "output": torch.allclose(y_loc, y_ref[lo:hi].detach(), atol=1e-10),
    "input gradient": torch.allclose(x_loc.grad, x_ref.grad[lo:hi], atol=1e-10),
    "parameter gradients": np.allclose(grads, torch.cat([reference.weight.grad, reference.bias.grad]).numpy()),
    "running mean": torch.allclose(sync[0].running_mean, reference.running_mean),
    "running var": torch.allclose(sync[0].running_var, reference.running_var),
}
failed = [name for name, ok in checks.items() if not ok]
flag = np.array([len(failed)], dtype=np.float64)
comm.allreduce_sum_(flag)
if failed:
    print(f"rank {comm.rank}/{comm.size}: mismatch in {', '.join(failed)}", file=sys.stderr)
if comm.rank == 0:
    print(f"size {comm.size}: {'OK' if flag[0] == 0 else 'MISMATCH'}")
sys.exit(1 if flag[0] else 0)
