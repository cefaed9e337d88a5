"""Write the assignment notebook ``notebooks/CA15.ipynb`` from the cell sources kept in this script.

    python notebooks/build_notebook.py            # (re)write notebooks/CA15.ipynb
    python notebooks/build_notebook.py --check    # exit 1 when CA15.ipynb differs from what this script builds

The notebook is reviewable as Python here and regenerable: edit the cells below, never the .ipynb.
Seed cells 2-13 are copied verbatim from ``notebooks/seed_cells.py`` (the seed notebook's API contract,
cell 11 with its documented ``num_actions=3``); seed cell 1 is copied with its implementation-root lines
replaced by the ``CA15_IMPL`` logic of the release (default ``../skeleton``, relative to the notebook).
The notebook is stored without outputs, with fixed cell ids, and validated with nbformat.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
NOTEBOOK = HERE / "CA15.ipynb"
SEED_CELLS = HERE / "seed_cells.py"
_CELL = re.compile(r"^# %% \[cell (\d+)\]\s*$", re.M)

#: The implementation-root lines of seed_cells.py's cell 1, and what the notebook has instead.
SEED_PATH_LINES = (
    '# Add the implementation root to the path  # CHANGED: CA15_IMPL (set by the grader), default "."\n'
    'sys.path.insert(0, os.path.abspath(os.environ.get("CA15_IMPL", ".")))\n'
)
NOTEBOOK_PATH_LINES = '''\
# Add the implementation root to the path  # CHANGED: CA15_IMPL (set by the grader), default ../skeleton
CA15_IMPL = os.path.abspath(os.environ.get("CA15_IMPL", os.path.join("..", "skeleton")))
if not os.path.isdir(os.path.join(CA15_IMPL, "model_based_rl")):
    raise FileNotFoundError(
        f"CA15_IMPL: no implementation root at {CA15_IMPL} (expected model_based_rl/, planning/, ... inside). "
        "Run the notebook from notebooks/ next to skeleton/, or set CA15_IMPL to your implementation root, "
        "e.g. CA15_IMPL=../reference in the kit repository."
    )
sys.path.insert(0, CA15_IMPL)
print(f"Implementation root: {CA15_IMPL}")
'''


def seed_cells() -> dict[int, str]:
    """Cell number -> source of the seed's code cells (``notebooks/seed_cells.py``), without trailing newline."""
    pieces = _CELL.split(SEED_CELLS.read_text(encoding="utf-8"))
    return {int(pieces[i]): pieces[i + 1].strip("\n") for i in range(1, len(pieces), 2)}


def setup_cell(seed_cell_1: str) -> str:
    """Seed cell 1 with the implementation-root lines replaced (everything else verbatim)."""
    if SEED_PATH_LINES not in seed_cell_1 + "\n":
        raise ValueError("seed cell 1 no longer holds the expected CA15_IMPL lines; update SEED_PATH_LINES")
    return (seed_cell_1 + "\n").replace(SEED_PATH_LINES, NOTEBOOK_PATH_LINES).rstrip("\n")


# =========================================================================================================
# Markdown and code of the notebook, in order. ("md", text) / ("code", text) / ("seed", n)
# =========================================================================================================

TITLE = r"""# Computer Assignment 15: Advanced Deep Reinforcement Learning
## Model-Based RL and Hierarchical RL

**Course:** Deep Reinforcement Learning  
**Institution:** Sharif University of Technology  
**Semester:** Fall 2024

---

### How to use this notebook

* **Your code lives in the implementation root** `skeleton/` (next to this `notebooks/` folder). The first
  code cell puts that folder on `sys.path`; every later cell imports from it. To run the notebook against
  another implementation root, set the environment variable **`CA15_IMPL`** before starting Jupyter, e.g.
  `CA15_IMPL=../reference jupyter lab` (the grader sets `CA15_IMPL` to your submission; in the kit repository
  `../reference` must be selected this way, since the kit has no `skeleton/` of its own).
* **Where the TODOs are:** every piece of student work raises
  `NotImplementedError("<Qualified.name>: <what to compute>")` under a `# TODO(student): ...` line in
  `skeleton/<package>/<module>.py` (`grep -rn "TODO(student)" skeleton/` lists them). The theory cell of each
  section below gives the equation behind each TODO and the function that holds it.
* **Run All:** the notebook stops being useful at the first cell that needs code you have not written yet;
  its error names the TODO, e.g. `NotImplementedError: soft_bound_log_std: x = max - softplus(max - raw); ...`.
  Implement it, restart the kernel, run again.
* **Tests:** `make test` runs the public tests of every component (per-component summary at the end);
  `make test-one K=dynamics_model` runs one component's. The notebook is the place to *see* your components
  work; the tests are the place to check them.
* Experiments are small (seconds each on a laptop CPU), use fixed seeds, and plot headlessly (`show(fig)`
  below displays a figure as a PNG).

---

## Table of Contents

1. [Environment Setup](#setup)
2. [Model-Based RL](#model-based)
3. [Hierarchical RL](#hierarchical)
4. [Planning Algorithms](#planning)
5. [Conclusion](#conclusion)"""

HELPERS = r'''# Notebook helpers (given): headless figure display, seeding, threads
import copy
import io
import time

from IPython.display import Image, display


def show(fig):
    """Display a matplotlib Figure as a PNG (works with the headless Agg backend), then close it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)  # no-op for the plain Figures that VisualizationUtils returns
    display(Image(data=buffer.getvalue()))


def set_seed(seed):
    """Seed python, numpy and torch: every experiment below starts from a fixed seed."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# The networks here are tiny: one CPU thread is the fastest (and the grader's) setting.
torch.set_num_threads(1)
NOTEBOOK_START = time.perf_counter()

# Training budgets. You run every experiment at its full budget. The grader runs this notebook with
# CA15_BUDGET=grading: every cell runs, on about a tenth of the training, because notebook credit says that each
# cell runs (the graded tests say whether your code learns); its copy's figures are rougher than yours.
GRADING_RUN = os.environ.get("CA15_BUDGET", "full") == "grading"


def budget(full, grading):
    """``full`` when you run the notebook, ``grading`` when the grader does (CA15_BUDGET=grading)."""
    return grading if GRADING_RUN else full


if GRADING_RUN:
    print("CA15_BUDGET=grading: each experiment runs on its small grading budget")'''

MB_THEORY = r"""## 2. Model-Based Reinforcement Learning <a name='model-based'></a>

Model-based RL learns an explicit model of the environment's dynamics.

### Key Concepts:
- **Dynamics Model**: $\hat{s}_{t+1} = f_\theta(s_t, a_t)$
- **Model Ensemble**: Multiple models for uncertainty
- **MPC**: Model Predictive Control
- **Dyna-Q**: Combines model-free and model-based learning

### Theory: the equations behind the TODOs

**Probabilistic dynamics model (PETS, Chua et al. 2018, §4.1)** — `model_based_rl/dynamics.py`.
One network outputs a diagonal Gaussian over the next state (as $s + \Delta\mu$) and the reward,
$p_\theta(s', r \mid s, a) = \mathcal N\big(\mu_\theta(s,a), \operatorname{diag}\sigma^2_\theta(s,a)\big)$,
trained by the Gaussian negative log-likelihood (PETS eq. 1, with the ½ and the constant):

$$\mathcal L_{\text{NLL}} = \frac1{N}\sum_{n}\Big[\tfrac12\Big(\frac{y_n-\mu_n}{\sigma_n}\Big)^2 + \log\sigma_n + \tfrac12\log 2\pi\Big]
\qquad\texttt{gaussian\_nll}$$

The log-std is kept inside learnable soft bounds (PETS appendix A.1), and the bounds are regularised by
$c\,(\sum\log\sigma_{\max} - \sum\log\sigma_{\min})$ (`DynamicsModel.loss`):

$$\log\sigma \leftarrow \log\sigma_{\max} - \operatorname{softplus}(\log\sigma_{\max} - x),\qquad
\log\sigma \leftarrow \log\sigma_{\min} + \operatorname{softplus}(\log\sigma - \log\sigma_{\min})
\qquad\texttt{soft\_bound\_log\_std}$$

A differentiable sample is $s' = \mu + \sigma\odot\varepsilon,\ \varepsilon\sim\mathcal N(0, I)$
(`DynamicsModel.sample_prediction`).

**Bootstrapped ensemble (PETS §4.1-4.3)** — `model_based_rl/ensemble.py`. $E$ members, all evaluated by one
batched matmul per layer, $y_e = x_e W_e + b_e$ (`EnsembleLinear.forward`, `torch.baddbmm`); member $e$ trains
on its own resample of the batch drawn *with replacement* (`bootstrap_indices`). The ensemble's prediction is
the uniform mixture $\frac1E\sum_e \mathcal N(\mu_e, \sigma_e^2)$, whose moments split by the law of total
variance into an *aleatoric* (noise) and an *epistemic* (disagreement) part (`combine_ensemble_moments`):

$$\bar\mu = \frac1E\sum_e\mu_e,\qquad
\operatorname{Var}[s'] = \underbrace{\frac1E\sum_e\sigma_e^2}_{\text{aleatoric}} + \underbrace{\frac1E\sum_e(\mu_e-\bar\mu)^2}_{\text{epistemic}}$$

Particles are propagated with *trajectory sampling* (`ModelEnsemble.propagate`): **TS1** draws a fresh member
for every particle at every step, **TS∞** fixes the member of each particle for the whole horizon; the next
state is a draw $\mu_{b}+\sigma_{b}\varepsilon$ of the chosen member $b$.

**Model predictive control (PETS §4, Algorithm 1)** — `model_based_rl/mpc.py`. A candidate action sequence
is scored by the mean over $P$ particles of its (discounted) model return (`evaluate_sequences`):

$$J(a_{t:t+H}) = \frac1P\sum_{p=1}^{P}\sum_{\tau=0}^{H-1}\gamma^\tau\, r\big(s^p_{t+\tau}, a_{t+\tau}\big)$$

*Random shooting* keeps the best of $N$ uniform sequences. The *cross-entropy method* samples $N$ sequences
from $\mathcal N(\mu, \sigma^2)$ clipped to the action box, keeps the $K$ best (`_plan_cem`) and refits with
momentum $\alpha$ (`cem_update`):

$$\mu \leftarrow \alpha\mu + (1-\alpha)\operatorname{mean}(\text{elites}),\qquad
\sigma \leftarrow \alpha\sigma + (1-\alpha)\operatorname{std}(\text{elites})$$

Only the first action is executed; the plan is shifted one step as the next warm start (`shift_plan`).

**Dyna-Q (Sutton & Barto 2018, §8.2)** — `model_based_rl/dyna_q.py`. Every real step does direct RL,
model learning and $n$ planning steps on simulated transitions from previously seen states and random actions
(`DynaQAgent.planning_step`). Both use the Q-learning target and squared TD error
(`q_learning_targets`, `q_learning_loss`), and acting is ε-greedy with random tie-breaking
(`epsilon_greedy_action`):

$$y = r + \gamma\,(1-d)\max_{a'}Q_{\bar\theta}(s', a'),\qquad
\mathcal L(\theta) = \frac1B\sum_b\big(y_b - Q_\theta(s_b, a_b)\big)^2$$"""

ENSEMBLE_EXPERIMENT_MD = r"""### 2.5 Experiment: what an ensemble knows it does not know

A 1-D regression problem in the model's own terms: the "state" is $x$, the action is a dummy zero, and the
"next state" is $y = \sin(1.5x) + \text{noise}$, with little noise on the left cluster and much more on the right
one, and no data in between or outside. Five bootstrapped members are fit by `ModelEnsemble.train_step`, then
`ModelEnsemble.predict` splits the predictive spread into its two parts.

*What to look for:* the **aleatoric** band is wide where the data are noisy and does not shrink with more data;
the **epistemic** band is thin where there are data and opens up in the gap and outside $[-2.5, 2.5]$, where the
members disagree. Which of the two should a planner be afraid of?"""

ENSEMBLE_EXPERIMENT = r'''set_seed(0)
x_left = np.random.uniform(-2.5, -0.7, 150)
x_right = np.random.uniform(0.7, 2.5, 150)
x_data = np.concatenate([x_left, x_right]).astype(np.float32)
noise_std = np.where(x_data > 0, 0.2, 0.05)                      # heteroscedastic: noisier on the right
y_data = (np.sin(1.5 * x_data) + noise_std * np.random.randn(x_data.size)).astype(np.float32)

toy_ensemble = ModelEnsemble(
    state_dim=1, action_dim=1, ensemble_size=5, hidden_dim=64, num_hidden_layers=2,
    predict_delta=False, lr=5e-3,                                 # predict y itself, not y - x
)
X = torch.tensor(x_data)[:, None]
Y = torch.tensor(y_data)[:, None]
dummy_action = torch.zeros(len(X), 1)
for step in range(budget(1500, 150)):
    batch = torch.randint(0, len(X), (128,))
    loss = toy_ensemble.train_step(X[batch], dummy_action[batch], Y[batch], torch.zeros(128))
print(f"final training loss (mean member NLL): {loss:.3f}")

x_grid = torch.linspace(-4, 4, 200)[:, None]
pred = toy_ensemble.predict(x_grid, torch.zeros(200, 1))
mean = pred.next_state_mean[:, 0]
aleatoric, epistemic = pred.aleatoric_std[:, 0], pred.epistemic_std[:, 0]

fig, axes = plt.subplots(1, 2, figsize=(13, 4), sharey=True)
VisualizationUtils.plot_uncertainty_band(x_grid[:, 0], mean, aleatoric, label="ensemble mean",
                                         observations=(x_data, y_data), title="aleatoric: ±2 σ_aleatoric",
                                         ax=axes[0])
VisualizationUtils.plot_uncertainty_band(x_grid[:, 0], mean, epistemic, label="ensemble mean",
                                         observations=(x_data, y_data), title="epistemic: ±2 σ_epistemic",
                                         ax=axes[1])
for ax in axes:
    ax.plot(x_grid[:, 0], np.sin(1.5 * x_grid[:, 0].numpy()), "k--", lw=1, label="true mean")
    ax.set_ylim(-3, 3)
    ax.legend(loc="lower left")
show(fig)

inside = (x_grid[:, 0] > -2.3) & (x_grid[:, 0] < -1.0)
outside = x_grid[:, 0].abs() > 3.2
print(f"epistemic std: inside the data {epistemic[inside].mean():.3f}, outside {epistemic[outside].mean():.3f}")
print(f"aleatoric std: left cluster {aleatoric[inside].mean():.3f} (true 0.05), "
      f"right cluster {aleatoric[(x_grid[:, 0] > 1.0) & (x_grid[:, 0] < 2.3)].mean():.3f} (true 0.2)")'''

MPC_EXPERIMENT_MD = r"""### 2.6 Experiment: MPC on a point mass — CEM vs random shooting, true model vs learned ensemble (PETS)

A point mass with state $(x, y, v_x, v_y)$ and acceleration actions in $[-1, 1]^2$ starts at $(-1, -1)$ and must
reach the star at $(1, 1)$ without entering the grey disc (reward $-\|p - p_{goal}\| - 10\cdot[\text{in disc}]$).
Three controllers plan 15 steps ahead at every step:

* **random shooting** with the true dynamics (800 sequences: the same number of model rollouts as CEM),
* **CEM** with the true dynamics (4 iterations × 200 sequences, 20 elites),
* **PETS**: CEM over a `ModelEnsemble` trained on 2000 random transitions, 4 particles per sequence with TS1.

*What to look for:* random shooting's first actions are noisy (it wobbles and overshoots the goal); CEM refines
the whole plan and brakes in time; PETS, which never saw the true equations, should track CEM closely."""

MPC_EXPERIMENT = r'''GOAL = torch.tensor([1.0, 1.0])
OBSTACLE, RADIUS, DT = torch.tensor([0.0, 0.0]), 0.45, 0.1


def point_mass(states, actions):
    """True dynamics: (M, 4) states, (M, 2) actions -> (M, 4) next states (damped double integrator)."""
    pos, vel = states[:, :2], states[:, 2:]
    vel = 0.9 * vel + DT * 2.0 * actions.clamp(-1, 1)
    return torch.cat([pos + DT * vel, vel], dim=-1)


def point_mass_reward(next_states, actions):
    """Reward of arriving in next_states: distance to the goal, a penalty inside the disc, a small action cost."""
    pos = next_states[:, :2]
    inside = ((pos - OBSTACLE).norm(dim=-1) < RADIUS).float()
    return -(pos - GOAL).norm(dim=-1) - 10.0 * inside - 0.01 * (actions ** 2).sum(-1)


def run_mpc(controller, steps=40):
    """Closed-loop episode from (-1, -1): plan, execute the first action, re-plan."""
    state = torch.tensor([-1.0, -1.0, 0.0, 0.0])
    positions, episode_return = [state[:2]], 0.0
    controller.reset()
    for _ in range(steps):
        action = controller.plan_action(state)
        next_state = point_mass(state[None], action[None])[0]
        episode_return += float(point_mass_reward(next_state[None], action[None]))
        state = next_state
        positions.append(state[:2])
    return torch.stack(positions).numpy(), episode_return


set_seed(0)
controllers = {
    "random shooting (true model)": ModelPredictiveController(
        point_mass, action_dim=2, horizon=15, num_samples=800, method="random",
        reward_fn=point_mass_reward, generator=torch.Generator().manual_seed(0)),
    "CEM (true model)": ModelPredictiveController(
        point_mass, action_dim=2, horizon=15, num_samples=200, method="cem", num_elites=20, num_iterations=4,
        reward_fn=point_mass_reward, generator=torch.Generator().manual_seed(0)),
}

# PETS: learn the dynamics from random transitions, then plan through the ensemble with TS1 particles.
S = torch.rand(2000, 4) * torch.tensor([3.0, 3.0, 2.0, 2.0]) - torch.tensor([1.5, 1.5, 1.0, 1.0])
A = torch.rand(2000, 2) * 2 - 1
S_next = point_mass(S, A)
pets_ensemble = ModelEnsemble(state_dim=4, action_dim=2, ensemble_size=5, hidden_dim=64, num_hidden_layers=2, lr=3e-3)
for step in range(budget(800, 80)):
    batch = torch.randint(0, len(S), (128,))
    loss = pets_ensemble.train_step(S[batch], A[batch], S_next[batch], torch.zeros(128))
print(f"ensemble trained on 2000 random transitions, final loss {loss:.2f}")
controllers["PETS: CEM + learned ensemble (TS1)"] = ModelPredictiveController(
    pets_ensemble, action_dim=2, horizon=15, num_samples=200, method="cem", num_elites=20, num_iterations=4,
    num_particles=4, propagation="ts1", reward_fn=point_mass_reward, generator=torch.Generator().manual_seed(0))

results = {name: run_mpc(ctrl, steps=budget(40, 10)) for name, ctrl in controllers.items()}

fig, (ax_xy, ax_dist) = plt.subplots(1, 2, figsize=(13, 5))
ax_xy.add_patch(plt.Circle(OBSTACLE.tolist(), RADIUS, color="grey", alpha=0.5))
for name, (positions, episode_return) in results.items():
    ax_xy.plot(positions[:, 0], positions[:, 1], ".-", label=f"{name}: return {episode_return:.1f}")
    ax_dist.plot(np.linalg.norm(positions - GOAL.numpy(), axis=1), label=name)
    print(f"{name:38s} return {episode_return:7.2f}   final distance {np.linalg.norm(positions[-1] - GOAL.numpy()):.3f}")
ax_xy.plot(*GOAL.tolist(), "r*", ms=18)
ax_xy.set_aspect("equal")
ax_xy.set_title("MPC trajectories")
ax_xy.legend(fontsize=8, loc="lower right")
ax_dist.set_xlabel("step")
ax_dist.set_ylabel("distance to goal")
ax_dist.set_title("distance to the goal")
ax_dist.legend(fontsize=8)
show(fig)'''

DYNA_EXPERIMENT_MD = r"""### 2.7 Experiment: Dyna-Q planning in a small maze (S&B Figure 8.2 in small)

A 4×5 maze with a wall (agent at the start: red, goal: green; reward 1 at the goal, $\gamma = 0.95$), one-hot observations.
As in Sutton & Barto's Figure 8.2, the first episode is a random walk (all Q-values start equal), during which
the agent learns Q and its model. From that same agent we continue two copies for 5 more episodes with the same
real-experience budget: $n = 0$ planning steps (Q-learning with a replay buffer) and $n = 10$ (Dyna-Q: 10 extra
Q-learning steps per real step on transitions simulated by the learned `DynamicsModel`, from previously seen
states and actions).

*What to look for:* with planning, the value of the goal spreads back along the path between real steps, so
the episodes after the first get short much sooner. A learned neural model is not S&B's exact table: try the
full `SimpleGridWorld.dyna_maze()` with more episodes, or `search_control="random"`, and see what changes."""

DYNA_EXPERIMENT = r'''DYNA_SEEDS, DYNA_EPISODES = budget(((0, 1, 2), 5), ((0,), 2))
MAZE = dict(height=4, width=5, walls=[(0, 2), (1, 2), (2, 2)], start=(1, 0), goal=(0, 4))

steps_per_episode = {"n = 0 planning steps": [], "n = 10 planning steps": []}
start = time.process_time()
for seed in DYNA_SEEDS:
    set_seed(seed)
    maze = SimpleGridWorld(**MAZE, observation="onehot", max_steps=None, render_mode="rgb_array")
    maze.reset(seed=seed)
    explorer = DynaQAgent(state_dim=maze.n_states, action_dim=4, lr=3e-3, gamma=0.95, target_update_interval=10,
                          model_lr=1e-2, model_hidden_dim=128)
    first = explorer.train(maze, 1, num_planning_steps=0, max_steps_per_episode=2000, epsilon=1.0)  # random walk
    for n in (0, 10):
        agent = copy.deepcopy(explorer)
        set_seed(100 + seed)
        history = agent.train(maze, DYNA_EPISODES, num_planning_steps=n, max_steps_per_episode=100, epsilon=0.1,
                              model_updates_per_step=3 if n else 0)
        steps_per_episode[f"n = {n} planning steps"].append(history["lengths"])
for name, runs in steps_per_episode.items():
    runs = np.array(runs)
    print(f"{name:>22}: mean steps per episode {runs.mean(axis=0).round(1)}  (total {runs.sum()})")
print(f"{time.process_time() - start:.1f} s CPU")

maze.reset()
fig, (ax_maze, ax_curve) = plt.subplots(1, 2, figsize=(13, 4), gridspec_kw={"width_ratios": [1, 1.6]})
ax_maze.imshow(maze.render())
ax_maze.set_title("4x5 maze")
ax_maze.axis("off")
curves = {name: np.array(runs) for name, runs in steps_per_episode.items()}
VisualizationUtils.plot_learning_curves(curves, xlabel="episode after the random walk", ylabel="steps per episode",
                                        title="Q-learning with replay (n = 0) vs Dyna-Q (n = 10)", ax=ax_curve)
ax_curve.axhline(9, color="k", ls=":", lw=1, label="shortest path (9)")
ax_curve.legend()
show(fig)'''

HRL_THEORY = r"""## 3. Hierarchical Reinforcement Learning <a name='hierarchical'></a>

Hierarchical RL uses temporal abstraction for long-horizon tasks.

### Key Concepts:
- **Options Framework**: Temporally extended actions
- **Goal-Conditioned RL**: Policies conditioned on goals
- **HAC**: Hierarchical Actor-Critic
- **Feudal Networks**: Manager-worker hierarchy

### Theory: the equations behind the TODOs

**Options and SMDP Q-learning (Sutton, Precup & Singh 1999)** — `hierarchical_rl/options.py`. An option
$o = \langle \mathcal I, \pi, \beta\rangle$ runs from $s$ for $k$ steps, collecting the discounted reward
$r = \sum_{i=0}^{k-1}\gamma^i r_{t+i+1}$ (`option_return`), and ends in $s'$. The SMDP backup discounts the
bootstrap by $\gamma^k$ (`smdp_target`):

$$Q(s, o) \leftarrow Q(s, o) + \alpha\Big[r + \gamma^k\max_{o'\in\mathcal O_{s'}}Q(s', o') - Q(s, o)\Big]$$

*Intra-option* Q-learning updates every option consistent with each primitive step $(s, a, r, s')$
(`intra_option_target`, `SMDPQLearningAgent.intra_option_update`):

$$Q(s, o) \leftarrow Q(s, o) + \alpha\big[r + \gamma\,U(s', o) - Q(s, o)\big],\qquad
U(s', o) = (1-\beta_o(s'))\,Q(s', o) + \beta_o(s')\max_{o'}Q(s', o')$$

**Hindsight Experience Replay (Andrychowicz et al. 2017)** — `hierarchical_rl/goal_conditioned.py`. With sparse
rewards $r(s, a, g) = -[\lVert m(s') - g\rVert > \epsilon]$, every transition of an episode is stored again with
$k$ goals achieved in the same episode (`sample_her_goals`: *future* $j\sim\mathcal U\{t+1..T\}$, *final* $j=T$,
*episode* $j\sim\mathcal U\{1..T\}$), its reward recomputed, $r' = r(s_t, a_t, m(s_j))$ (`relabel_episode`).
The off-policy learner's targets are clipped to the range of returns (`her_critic_targets`), and the DDPG
actor is penalised for large actions (`her_actor_loss`):

$$y = \operatorname{clip}\Big(r + \gamma(1-d)\,Q'(s', g, \pi'(s', g)),\ -\tfrac1{1-\gamma},\ 0\Big),\qquad
\mathcal L_\pi = -\,\overline{Q(s, g, \pi(s, g))} + \lambda\,\overline{\pi(s, g)^2}$$

**Hierarchical Actor-Critic (Levy et al. 2019)** — `hierarchical_rl/hac.py`. A goal is achieved when
$|\varphi(s) - g| \le \epsilon$ in every coordinate (`hac_goal_achieved`). Each level's critic is bounded to the
range of its returns (`hac_critic_target`): $y = \operatorname{clip}\big(r + \gamma(1-d)Q(s', \pi(s', g), g), -H, 0\big)$.
Three kinds of transitions make all levels learn at once:
* *hindsight action* (§4.2): an upper level's action is replaced by the subgoal actually reached,
  $\tilde a = \varphi(s')$, with $r = 0$ if the level's goal was achieved else $-1$ (`hindsight_action_transition`);
* *hindsight goal* (§4.3): the same transition with a goal achieved later, reward recomputed (`hindsight_goal_transition`);
* *subgoal testing* (§4.4): a tested subgoal that the noise-free level below misses is punished with
  $r = -H$ and no bootstrap (`subgoal_test_transition`).

**FeUdal Networks (Vezhnevets et al. 2017)** — `hierarchical_rl/feudal.py`. The Manager emits unit goal
directions $g_t$ in a latent space $s_t$ every step; the Worker's policy is modulated by the pooled goals,
$w_t = \phi\big(\sum_{i=t-c}^{t} g_i\big)$, $\pi_t = \operatorname{SoftMax}(U_t w_t)$ (eqs. 4, 6: `fun_policy_logits`).
The Manager follows the *transition policy gradient* (eq. 7, `fun_transition_policy_loss`) and the Worker
gets an intrinsic reward for moving in the Manager's directions (eq. 8, `fun_intrinsic_reward`), trained by
advantage actor-critic on $r + \alpha r^I$ (`fun_worker_loss`):

$$\mathcal L_M = -\frac1T\sum_t A^M_t\, d_{\cos}\big(s_{t+c} - s_t,\ g_t(\theta)\big),\qquad
r^I_t = \frac1c\sum_{i=1}^{c} d_{\cos}\big(s_t - s_{t-i},\ g_{t-i}\big)$$"""

OPTIONS_EXPERIMENT_MD = r"""### 3.5 Experiment: options vs primitive actions in the four-rooms world

The rooms example of Sutton, Precup & Singh (1999): moves succeed with probability 2/3, the goal is the
hallway cell $(7, 9)$, $\gamma = 0.9$. Tabular SMDP Q-learning (`SMDPQLearningAgent`) over the 4 primitive
actions alone, against the same learner over the 8 hand-made *hallway options* (`make_hallway_options`, each
walks to one of its room's hallways) plus the primitives. Five seeds each.

*What to look for:* options reach the goal in far fewer primitive steps in the early episodes: one SMDP
backup moves value across a whole room. The right panel counts the agent's *decisions*: with options a whole
episode takes a handful of choices."""

OPTIONS_EXPERIMENT = r'''from hierarchical_rl.algorithms import SMDPQLearningAgent, make_hallway_options, primitive_option
from hierarchical_rl.environments import FourRoomsEnv

EPISODES, SEEDS = budget((40, (0, 1, 2, 3, 4)), (8, (0, 1)))
rooms_steps, rooms_decisions = {}, {}
for label, with_options in (("primitives only", False), ("hallway options + primitives", True)):
    steps, decisions = [], []
    for seed in SEEDS:
        rooms = FourRoomsEnv(goal=(7, 9), start=(1, 1), max_steps=1000)
        options = make_hallway_options(rooms) if with_options else []
        options += [primitive_option(a, option_id=len(options) + a) for a in range(rooms.num_actions)]
        smdp_agent = SMDPQLearningAgent(options, rooms.num_states, gamma=0.9, alpha=0.125, epsilon=0.1, seed=seed)
        history = smdp_agent.train(rooms, EPISODES)
        steps.append(history["steps"])
        decisions.append(history["decisions"])
    rooms_steps[label], rooms_decisions[label] = np.array(steps), np.array(decisions)
    print(f"{label:30s} primitive steps over {EPISODES} episodes per seed: {rooms_steps[label].sum(axis=1)}; "
          f"decisions in the last 10 episodes: {rooms_decisions[label][:, -10:].mean():.1f} per episode")

fig, (ax_steps, ax_decisions) = plt.subplots(1, 2, figsize=(13, 4))
VisualizationUtils.plot_learning_curves(rooms_steps, smoothing=3, xlabel="episode",
                                        ylabel="primitive steps to the goal",
                                        title="four rooms: steps per episode (mean ± std, 5 seeds)", ax=ax_steps)
VisualizationUtils.plot_learning_curves(rooms_decisions, smoothing=3, xlabel="episode",
                                        ylabel="option choices per episode",
                                        title="decisions per episode: temporal abstraction", ax=ax_decisions)
for ax in (ax_steps, ax_decisions):
    ax.set_ylim(bottom=0)
show(fig)
print("four-rooms layout (H: hallways; A: the agent, here on the goal hallway (7, 9) where the last episode ended)")
print(rooms.ansi())'''

HER_EXPERIMENT_MD = r"""### 3.6 Experiment: Hindsight Experience Replay on bit flipping

The bit-flipping task of the HER paper (§3.1): $n = 8$ bits, action $i$ flips bit $i$, reward $-1$ until the
bits equal a random target, at most $n$ steps. A random policy essentially never sees a reward of $0$ and DQN
learns nothing; with HER every failed episode still teaches how to reach the goals it *did* reach.
DQN with `her_k=4` ("future") against `her_k=0`, two seeds each, greedy success rate every 20 episodes.

*What to look for:* HER climbs towards 100 % success within 200 episodes; without relabelling the success
rate stays near 0 for the same budget."""

HER_EXPERIMENT = r'''from hierarchical_rl.environments import HierarchicalRLEnvironment

N_BITS, HER_EPISODES = 8, budget(200, 20)
her_success, eval_x = {}, None
for label, her_k in (("DQN + HER (k = 4, future)", 4), ("DQN, no relabelling", 0)):
    runs = []
    for seed in budget((0, 1), (0,)):
        set_seed(seed)
        bits = HierarchicalRLEnvironment.bit_flipping(n_bits=N_BITS)
        her_agent = GoalConditionedAgent(
            state_dim=N_BITS, action_dim=N_BITS, goal_dim=N_BITS, lr=1e-3, her_k=her_k, strategy="future",
            gamma=0.98, discrete_actions=True, reward_fn=bits.compute_reward, hidden_dim=128,
            n_hidden_layers=1, batch_size=128, seed=seed)
        history = her_agent.train(bits, HER_EPISODES, updates_per_episode=10, noise_scale=0.2,
                                  eval_every=budget(20, 10), eval_episodes=budget(20, 5), seed=seed)
        runs.append(history["eval_success_rate"])
        eval_x = history["eval_episode"]
    her_success[label] = np.array(runs)
    print(f"{label:28s} final greedy success per seed: {her_success[label][:, -1]}")

show(VisualizationUtils.plot_learning_curves(her_success, x=eval_x, xlabel="training episode",
                                             ylabel="greedy success rate",
                                             title=f"{N_BITS}-bit flipping: HER vs no HER"))'''

PLANNING_THEORY = r"""## 4. Planning Algorithms <a name='planning'></a>

Advanced planning methods for decision-making.

### Key Concepts:
- **MCTS**: Monte Carlo Tree Search for discrete action spaces
- **World Models**: Complete environment simulators with VAE
- **Latent Space Planning**: Planning in learned low-dimensional representations

### Theory: the equations behind the TODOs

**Monte Carlo tree search with UCT (Kocsis & Szepesvári 2006)** — `planning/mcts.py`. Each simulation
*selects* children by the UCB1 score until a leaf (`ucb_score`, `select_child`; unvisited children score $+\infty$),
*expands* the leaf with one child per action (`expand_node`), *evaluates* it by a short random rollout, and
*backs up* the discounted return along the path, every node adding one visit and its own return (`backup`):

$$\text{UCB}(s, a) = Q(s, a) + c\sqrt{\frac{\ln N(s)}{N(s, a)}},\qquad Q(s, a) = r(s, a) + \gamma\,V(s'),\qquad
G_{\text{parent}} = r + \gamma\,G_{\text{child}}$$

The action played is the most visited child of the root.

**Model-based value expansion (Feinberg et al. 2018)** — `planning/mve.py`. The critic's target unrolls the
model $H$ steps and bootstraps once; with the TD-k trick every state of the imagined trajectory gets its own
target, computed backwards (`compute_targets`) and regressed with a masked squared error (`mve_loss`):

$$\hat V_t = r_t + \gamma(1-d_t)\hat V_{t+1},\quad \hat V_T = V'(s_T),\qquad
\mathcal L = \frac1T\sum_{t=0}^{T-1}\big(V(s_t) - \hat V_t\big)^2$$

**World model (Ha & Schmidhuber 2018; Kingma & Welling 2014; PlaNet)** — `planning/world_model.py`.
A VAE encodes $q(z\mid s) = \mathcal N(\mu, \sigma^2)$, samples $z = \mu + \sigma\odot\varepsilon$
(`WorldModel.reparameterize`), and a latent transition and reward model are trained jointly
(`WorldModel.loss`, with the closed-form `gaussian_kl`):

$$\mathcal L = \lVert \text{dec}(z) - s\rVert^2 + \beta\,\underbrace{\Big(-\tfrac12\sum_j\big(1 + \log\sigma_j^2 - \mu_j^2 - \sigma_j^2\big)\Big)}_{\mathrm{KL}(q(z|s)\,\|\,\mathcal N(0, I))}
+ \lVert f(z, a) - \operatorname{sg}[\mu(s')]\rVert^2 + \big(\hat r(z, a) - r\big)^2$$

`WorldModel.imagine` rolls the latent model forward, $\hat r_t = \hat r(z_t, a_t)$, $z_{t+1} = f(z_t, a_t)$,
without looking at observations ("dreaming").

**Latent-space CEM planning (PlaNet, Hafner et al. 2019)** — `planning/latent_planner.py`. Sample $N$ action
sequences from the belief, clipped to the box (`sample_action_sequences`), score each by its imagined return
$R = \sum_{t<H}\hat r(z_t, a_t)$ in one batched latent rollout (`latent_rollout_returns`), and refit the belief
to the $K$ elites (`cem_refit`): $\mu = \operatorname{mean}(\text{elites})$, $\sigma = \operatorname{std}(\text{elites})$."""

MCTS_EXPERIMENT_MD = r"""### 4.4 Experiment: where does MCTS spend its simulations?

On the toy line world of 4.1 (actions $-1, 0, +1$, goal at $10$), the bars show the root's visit counts
$N(s_0, a)$ after searches from several start states and with several simulation budgets.

*What to look for:* left of the goal the visits pile onto $+1$, right of it onto $-1$, and the preference
sharpens as the budget grows, while every action still gets a few visits (the $\sqrt{\ln N / N(s,a)}$ bonus)."""

MCTS_EXPERIMENT = r'''ACTIONS = ["-1", "0", "+1"]
fig, (ax_states, ax_budget) = plt.subplots(1, 2, figsize=(13, 4))

start_states, width = (0, 6, 14), 0.25
for i, state in enumerate(start_states):
    planner = MonteCarloTreeSearch(env=SimpleMCTSEnv(), num_simulations=100, exploration_constant=1.4,
                                   max_depth=20, num_actions=3, seed=0)
    root = planner.search(state)
    counts = root.visit_counts(3)
    ax_states.bar(np.arange(3) + (i - 1) * width, counts, width, label=f"root state {state}")
    print(f"root state {state:2d}: visit counts {counts.tolist()}, Q = "
          f"{[round(root.q_value(root.children[a], planner.gamma), 1) for a in range(3)]}")
ax_states.set_xticks(range(3), ACTIONS)
ax_states.set_xlabel("action")
ax_states.set_ylabel("root visit count N(s0, a)")
ax_states.set_title("100 simulations from different states (goal = 10)")
ax_states.legend()

for i, simulations in enumerate((10, 30, 100, 300)):
    planner = MonteCarloTreeSearch(env=SimpleMCTSEnv(), num_simulations=simulations, exploration_constant=1.4,
                                   max_depth=20, num_actions=3, seed=0)
    policy = planner.search(0).policy(temperature=1.0, num_actions=3)
    ax_budget.bar(np.arange(3) + (i - 1.5) * 0.2, policy, 0.2, label=f"{simulations} simulations")
ax_budget.set_xticks(range(3), ACTIONS)
ax_budget.set_xlabel("action")
ax_budget.set_ylabel("visit share N(s0, a) / N(s0)")
ax_budget.set_title("search policy from state 0 vs simulation budget")
ax_budget.legend()
show(fig)'''

MVE_EXPERIMENT_MD = r"""### 4.5 Experiment: model-based value expansion speeds up value learning

A system whose value we know: $s' = 0.9\,s$, reward $r = s$, $\gamma = 0.9$, so $V(s) = s / (1 - 0.81)$. A small
critic $V_\theta$ is trained by `ModelBasedValueExpansion.train_step` on random start states, with the (here exact)
model unrolled $H = 1$ (plain TD(0) on a model transition), $3$ or $10$ steps before bootstrapping from the
Polyak-averaged target critic.

*What to look for:* the longer the expansion, the less the target depends on the (initially wrong) critic, and
the faster the error falls. With a learned model the picture changes: every imagined step adds model error, the
trade-off MVE's fixed horizon (and later STEVE's adaptive one) is about."""

MVE_EXPERIMENT = r'''MVE_GAMMA = 0.9


def linear_model(states, actions):
    """Known model: s' = 0.9 s, r = s (the action is ignored)."""
    return 0.9 * states, states[:, 0]


s_grid = torch.linspace(-1, 1, 101)[:, None]
true_values = s_grid[:, 0] / (1 - 0.9 * MVE_GAMMA)
MVE_STEPS = budget(400, 100)
value_errors, checkpoints = {}, list(range(0, MVE_STEPS, MVE_STEPS // 20))
for horizon in (1, 3, 10):
    set_seed(0)
    critic = nn.Sequential(nn.Linear(1, 32), nn.Tanh(), nn.Linear(32, 1))
    mve = ModelBasedValueExpansion(linear_model, critic, horizon=horizon, gamma=MVE_GAMMA, lr=3e-3, tau=0.05,
                                   policy=lambda states: torch.zeros(states.shape[0], 1))
    errors = []
    for step in range(MVE_STEPS):
        if step in checkpoints:
            with torch.no_grad():
                errors.append(float((critic(s_grid)[:, 0] - true_values).abs().mean()))
        mve.train_step(torch.rand(64, 1) * 2 - 1)
    value_errors[f"H = {horizon}"] = errors
    print(f"H = {horizon:2d}: mean |V - V_true| after 0/{checkpoints[5]}/{checkpoints[10]}/{checkpoints[-1]} steps: "
          f"{errors[0]:.2f} / {errors[5]:.2f} / {errors[10]:.2f} / {errors[-1]:.2f}")

show(VisualizationUtils.plot_learning_curves(value_errors, x=checkpoints, xlabel="critic updates",
                                             ylabel="mean |V(s) - V_true(s)|",
                                             title="MVE: value error vs expansion horizon H"))'''

WORLD_MODEL_EXPERIMENT_MD = r"""### 4.6 Experiment: a world model of the point mass — reconstructions and a dream

A `WorldModel` (8-D latent, $\beta = 0.01$) is trained on 4000 random transitions of the point mass of 2.6,
with the reward $-\lVert p' - p_{goal}\rVert$. Left: states against their reconstructions
$\text{dec}(\mu(s))$ on held-out states. Right: a fixed action sequence (10 steps pushing right, then 10 pushing
up) executed in the true system and *imagined* by the model from the encoded start state alone
(`WorldModel.imagine`, decoded with `WorldModel.decode`).

*What to look for:* reconstructions on the diagonal; the dreamed trajectory follows the true one and drifts
slowly as model errors compound over the horizon."""

WORLD_MODEL_EXPERIMENT = r'''set_seed(0)
N_TRANSITIONS = 4000
S = torch.rand(N_TRANSITIONS, 4) * torch.tensor([3.0, 3.0, 2.0, 2.0]) - torch.tensor([1.5, 1.5, 1.0, 1.0])
A = torch.rand(N_TRANSITIONS, 2) * 2 - 1
S_next = point_mass(S, A)
R = -(S_next[:, :2] - GOAL).norm(dim=-1)

pm_world_model = WorldModel(state_dim=4, action_dim=2, latent_dim=8, hidden_dim=64, beta=0.01, lr=2e-3)
WM_STEPS = budget(1500, 150)
for step in range(WM_STEPS):
    batch = torch.randint(0, N_TRANSITIONS, (128,))
    parts = pm_world_model.train_step(S[batch], A[batch], R[batch], S_next[batch])
    if step % 500 == 0 or step == WM_STEPS - 1:
        print(f"step {step:4d}: " + ", ".join(f"{k} {v:.4f}" for k, v in parts.items()))

with torch.no_grad():
    test_states = torch.rand(300, 4) * torch.tensor([3.0, 3.0, 2.0, 2.0]) - torch.tensor([1.5, 1.5, 1.0, 1.0])
    reconstructed = pm_world_model.decode(pm_world_model.encode(test_states)[0])

    start = torch.tensor([[-1.0, -0.5, 0.0, 0.0]])
    dream_actions = torch.zeros(1, 20, 2)
    dream_actions[0, :10, 0] = 1.0   # push right for 10 steps,
    dream_actions[0, 10:, 1] = 1.0   # then up for 10 steps
    true_states = [start]
    for t in range(20):
        true_states.append(point_mass(true_states[-1], dream_actions[:, t]))
    true_states = torch.cat(true_states)
    latents, dream_rewards = pm_world_model.imagine(pm_world_model.encode(start)[0], dream_actions)
    dreamed = torch.cat([start, pm_world_model.decode(latents[0])])

fig, (ax_rec, ax_dream) = plt.subplots(1, 2, figsize=(13, 5))
for d, name in enumerate(["x", "y", "v_x", "v_y"]):
    ax_rec.scatter(test_states[:, d], reconstructed[:, d], s=6, label=name)
ax_rec.plot([-1.5, 1.5], [-1.5, 1.5], "k--", lw=1)
ax_rec.set_xlabel("true state coordinate")
ax_rec.set_ylabel("reconstruction dec(μ(s))")
ax_rec.set_title("VAE reconstructions (held-out states)")
ax_rec.legend()
ax_dream.plot(true_states[:, 0], true_states[:, 1], "o-", label="true trajectory")
ax_dream.plot(dreamed[:, 0], dreamed[:, 1], "s--", label="imagined (decoded latents)")
ax_dream.set_title("imagined rollout vs true trajectory (same 20 actions)")
ax_dream.set_aspect("equal")
ax_dream.legend()
show(fig)
errors = (dreamed - true_states)[:, :2].norm(dim=-1)
print(f"reconstruction MSE {F.mse_loss(reconstructed, test_states).item():.4f}; "
      f"imagined position error after 5 / 10 / 20 steps: {errors[5]:.3f} / {errors[10]:.3f} / {errors[20]:.3f}")
true_rewards = -(true_states[1:, :2] - GOAL).norm(dim=-1)
print(f"imagined vs true return of the sequence: {dream_rewards.sum():.2f} vs {true_rewards.sum():.2f}")'''

LATENT_PLANNING_EXPERIMENT_MD = r"""### 4.7 Experiment: planning in the latent space of the learned world model

`LatentSpacePlanner.from_world_model` plans with CEM entirely inside the world model of 4.5 (encoder mean,
latent transition, reward head): it never calls the true dynamics. The point mass starts at $(-1, -1)$ at rest;
each step the planner imagines 200 candidate 10-step sequences, executes the first action of its final belief
in the true system and re-plans (no obstacle here: the world model's reward knows only the goal).

*What to look for:* the agent heads for the goal and stops near it, even though its only knowledge of the
world is what it dreamed."""

LATENT_PLANNING_EXPERIMENT = r'''set_seed(0)
latent_mpc = LatentSpacePlanner.from_world_model(pm_world_model, planning_horizon=10, num_iterations=4)
state = torch.tensor([-1.0, -1.0, 0.0, 0.0])
positions = [state[:2]]
for step in range(30):
    action = latent_mpc.plan(state, num_candidates=200)
    state = point_mass(state[None], action[None])[0]
    positions.append(state[:2])
positions = torch.stack(positions).numpy()
imagined_plan = latent_mpc.decode_plan(state).numpy()

fig, ax = plt.subplots(figsize=(5.5, 5.5))
ax.plot(positions[:, 0], positions[:, 1], ".-", label="executed (true system)")
ax.plot(imagined_plan[:, 0], imagined_plan[:, 1], "x:", label="last imagined plan (decoded)")
ax.plot(*GOAL.tolist(), "r*", ms=18, label="goal")
ax.set_aspect("equal")
ax.set_title("latent-space CEM with the learned world model")
ax.legend()
show(fig)
print(f"final distance to the goal: {np.linalg.norm(positions[-1] - GOAL.numpy()):.3f} (start: {np.linalg.norm(positions[0] - GOAL.numpy()):.3f})")
print(f"notebook experiments done in {time.perf_counter() - NOTEBOOK_START:.0f} s")'''

CONCLUSION = r"""## 5. Conclusion <a name='conclusion'></a>

This notebook demonstrated the implementation and usage of advanced deep RL algorithms:

### ✅ Model-Based RL:
- **Dynamics Models**: Neural networks that learn environment transitions
- **Model Ensembles**: Multiple models for uncertainty quantification
- **MPC**: Model Predictive Control for planning with learned models
- **Dyna-Q**: Integrates model-free Q-learning with model-based planning

### ✅ Hierarchical RL:
- **Options Framework**: Temporal abstraction with initiation, policy, and termination
- **Hierarchical Actor-Critic**: Multi-level policies with subgoal generation
- **Goal-Conditioned RL**: Policies conditioned on desired goals with HER
- **Feudal Networks**: Manager-worker hierarchy with goal embeddings

### ✅ Planning Algorithms:
- **MCTS**: Tree-based search for discrete action spaces
- **World Models**: VAE-based environment simulators with latent dynamics
- **Latent Space Planning**: Efficient planning in learned representations

### Key Advantages:

1. **Sample Efficiency**: Model-based methods significantly reduce required environment interactions
2. **Long-Horizon Tasks**: Hierarchical methods enable solving tasks with temporal dependencies
3. **Generalization**: Goal-conditioned agents transfer knowledge across different goals
4. **Planning**: Learned models enable sophisticated look-ahead and strategic decision-making
5. **Uncertainty Awareness**: Ensemble methods and probabilistic models quantify prediction uncertainty

### When to Use Each Method:

- **Model-Based RL**: When environment interactions are expensive (robotics, real-world applications)
- **Hierarchical RL**: For tasks requiring long sequences of actions or natural skill decomposition
- **Planning**: When you need explicit reasoning about future outcomes or exploration
- **Goal-Conditioned**: For multi-task learning or when goals change frequently

### Future Directions:

- Combining model-based and hierarchical approaches for maximum efficiency
- Meta-learning for rapid adaptation to new environments
- World models for imagination and offline learning
- Hierarchical planning in learned latent spaces

---

**All implementations are modular and importable from the corresponding Python modules.**

**Sharif University of Technology - Deep Reinforcement Learning - Fall 2024**"""

#: The notebook, in order: ("md", text), ("code", text), ("seed", n) for a verbatim seed cell, ("setup",) for cell 1.
CELLS: list[tuple] = [
    ("md", TITLE),
    ("md", "## 1. Environment Setup <a name='setup'></a>"),
    ("setup",),
    ("code", HELPERS),
    ("md", "### Import CA15 Components from Local Modules"),
    ("seed", 2),
    ("md", MB_THEORY),
    ("md", "### 2.1 Dynamics Model Demo"),
    ("seed", 3),
    ("md", "### 2.2 Model Ensemble"),
    ("seed", 4),
    ("md", "### 2.3 Model Predictive Control"),
    ("seed", 5),
    ("md", "### 2.4 Dyna-Q Agent"),
    ("seed", 6),
    ("md", ENSEMBLE_EXPERIMENT_MD),
    ("code", ENSEMBLE_EXPERIMENT),
    ("md", MPC_EXPERIMENT_MD),
    ("code", MPC_EXPERIMENT),
    ("md", DYNA_EXPERIMENT_MD),
    ("code", DYNA_EXPERIMENT),
    ("md", HRL_THEORY),
    ("md", "### 3.1 Options Framework"),
    ("seed", 7),
    ("md", "### 3.2 Hierarchical Actor-Critic"),
    ("seed", 8),
    ("md", "### 3.3 Goal-Conditioned Agent with HER"),
    ("seed", 9),
    ("md", "### 3.4 Feudal Networks"),
    ("seed", 10),
    ("md", OPTIONS_EXPERIMENT_MD),
    ("code", OPTIONS_EXPERIMENT),
    ("md", HER_EXPERIMENT_MD),
    ("code", HER_EXPERIMENT),
    ("md", PLANNING_THEORY),
    ("md", "### 4.1 Monte Carlo Tree Search"),
    ("seed", 11),
    ("md", "### 4.2 World Model"),
    ("seed", 12),
    ("md", "### 4.3 Latent Space Planner"),
    ("seed", 13),
    ("md", MCTS_EXPERIMENT_MD),
    ("code", MCTS_EXPERIMENT),
    ("md", MVE_EXPERIMENT_MD),
    ("code", MVE_EXPERIMENT),
    ("md", WORLD_MODEL_EXPERIMENT_MD),
    ("code", WORLD_MODEL_EXPERIMENT),
    ("md", LATENT_PLANNING_EXPERIMENT_MD),
    ("code", LATENT_PLANNING_EXPERIMENT),
    ("md", CONCLUSION),
]


def build() -> nbformat.NotebookNode:
    """The notebook, validated, without outputs, with deterministic cell ids."""
    seeds = seed_cells()
    cells = []
    for index, spec in enumerate(CELLS):
        kind = spec[0]
        if kind == "md":
            cell = nbformat.v4.new_markdown_cell(spec[1])
        elif kind == "setup":
            cell = nbformat.v4.new_code_cell(setup_cell(seeds[1]))
        elif kind == "seed":
            cell = nbformat.v4.new_code_cell(seeds[spec[1]])
            cell.metadata["ca15_seed_cell"] = spec[1]
        else:
            cell = nbformat.v4.new_code_cell(spec[1])
        cell.id = f"ca15-{index:02d}-{kind}"
        cells.append(cell)
    cells[2].metadata["ca15_seed_cell"] = 1
    nb = nbformat.v4.new_notebook(
        cells=cells,
        metadata={
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python", "version": "3.11"},
        },
    )
    nbformat.validate(nb)
    return nb


def render(nb: nbformat.NotebookNode) -> str:
    """The notebook file's text (nbformat's JSON, newline-terminated)."""
    return nbformat.writes(nb) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that CA15.ipynb is up to date")
    parser.add_argument("--out", type=Path, default=NOTEBOOK, help="where to write (default: notebooks/CA15.ipynb)")
    args = parser.parse_args(argv)
    text = render(build())
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else None
        if current != text:
            print(f"{args.out} is out of date: run `python notebooks/build_notebook.py`", file=sys.stderr)
            return 1
        print(f"{args.out} is up to date")
        return 0
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out} ({len(CELLS)} cells)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
