//! Turning a task directory and its configuration into an ordered, validated [`Plan`].
//!
//! Everything that can be known before the first task starts is checked here: unknown
//! dependencies, cycles, task files that cannot be executed. The order is a topological
//! order of `depends_on` in which ties go to the smaller file name, so a directory without
//! dependencies runs in plain file-name order, exactly like run-parts.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use crate::config::{ChainConfig, ConfigError, TaskSettings};
use crate::taskdir::{TaskDir, TaskFile, task_name};

/// One task in the plan with everything needed to run it.
#[derive(Debug, Clone)]
pub(crate) struct Step {
    /// The file and its name.
    pub(crate) task: TaskFile,
    /// Effective settings.
    pub(crate) settings: TaskSettings,
    /// Positions (in [`Plan::steps`]) of the steps this one waits for.
    pub(crate) deps: Vec<usize>,
}

/// The validated, ordered chain.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// Steps in run order.
    pub(crate) steps: Vec<Step>,
    /// Tasks switched off with `enabled = false`, in file order.
    pub(crate) disabled: Vec<TaskFile>,
    /// The halt task, when its file exists.
    pub(crate) halt: Option<Step>,
}

/// A dependency graph or task file that cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// `depends_on` names a task that is not in the directory.
    #[error("{origin}: task \"{task}\" depends on \"{dependency}\", which is not a task in {}", dir.display())]
    UnknownDependency {
        /// Where `depends_on` was set.
        origin: String,
        /// The task declaring the dependency.
        task: String,
        /// The missing task.
        dependency: String,
        /// The task directory.
        dir: PathBuf,
    },
    /// The dependencies loop.
    #[error("dependency cycle: {} (each task depends on the next)", tasks.join(" -> "))]
    Cycle {
        /// The tasks of one cycle, each depending on the next, the first repeated at the end.
        tasks: Vec<String>,
    },
    /// A task's name is taken by the halt task or by one of runner's own sections, so
    /// its records or its settings would be mixed up with theirs.
    #[error("task file {file:?} has the name \"{name}\", which {taken}")]
    NameTaken {
        /// The task file.
        file: String,
        /// Its derived name.
        name: String,
        /// What already has that name.
        taken: String,
    },
    /// A task file has no execute bit and no interpreter applies to it.
    #[error("task file {} is not executable", path.display())]
    NotExecutable {
        /// The file.
        path: PathBuf,
    },
    /// A task's settings in the configuration are wrong (found while building the plan,
    /// which is where each task's settings are first looked up).
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl PlanError {
    /// Advice printed under the message.
    pub(crate) fn hint(&self) -> Option<String> {
        match self {
            PlanError::NotExecutable { path } => Some(format!(
                "run `chmod +x {}`, or set `interpreter` in [runner] or in the task's section",
                path.display()
            )),
            PlanError::Cycle { .. } => {
                Some("remove one of the depends_on entries along the cycle".to_owned())
            }
            PlanError::NameTaken { .. } => Some(
                "rename the task file: a task name drops the ordering prefix and the extension"
                    .to_owned(),
            ),
            PlanError::UnknownDependency { .. } => Some(
                "dependencies use task names: the file name without ordering prefix and extension"
                    .to_owned(),
            ),
            PlanError::Config(e) => e.hint(),
        }
    }
}

impl Plan {
    /// Validates the chain and orders it.
    pub(crate) fn build(dir: &TaskDir, config: &ChainConfig) -> Result<Plan, PlanError> {
        let halt_name = dir
            .halt
            .as_ref()
            .and_then(|p| p.file_name())
            .map(|n| task_name(&n.to_string_lossy()));
        for task in &dir.tasks {
            let taken = match task.name.as_str() {
                "runner" | "env" => Some(format!(
                    "is the [{}] section of the configuration",
                    task.name
                )),
                name if Some(name) == halt_name.as_deref() => Some("is the halt task's".to_owned()),
                _ => None,
            };
            if let Some(taken) = taken {
                return Err(PlanError::NameTaken {
                    file: task.file_name.clone(),
                    name: task.name.clone(),
                    taken,
                });
            }
        }
        let mut settings = Vec::with_capacity(dir.tasks.len());
        for task in &dir.tasks {
            settings.push(config.task_settings(&task.name)?);
        }
        let index_of = |name: &str| dir.tasks.iter().position(|t| t.name == name);

        // Dependencies by file index; dependencies on disabled tasks count as met.
        let mut deps: Vec<Vec<usize>> = vec![Vec::new(); dir.tasks.len()];
        for (i, task) in dir.tasks.iter().enumerate() {
            for dep in &settings[i].depends_on {
                let Some(j) = index_of(dep) else {
                    let origin = config
                        .origin_of(&task.name, "depends_on")
                        .map(|e| e.origin.to_string())
                        .unwrap_or_default();
                    return Err(PlanError::UnknownDependency {
                        origin,
                        task: task.name.clone(),
                        dependency: dep.clone(),
                        dir: dir.path.clone(),
                    });
                };
                if j == i {
                    return Err(PlanError::Cycle {
                        tasks: vec![task.name.clone(), task.name.clone()],
                    });
                }
                if settings[j].enabled && !deps[i].contains(&j) {
                    deps[i].push(j);
                }
            }
        }

        let enabled: Vec<usize> = (0..dir.tasks.len())
            .filter(|&i| settings[i].enabled)
            .collect();
        let order = topological_order(&enabled, &deps).map_err(|cycle| PlanError::Cycle {
            tasks: cycle.iter().map(|&i| dir.tasks[i].name.clone()).collect(),
        })?;

        let mut position = vec![usize::MAX; dir.tasks.len()];
        for (pos, &i) in order.iter().enumerate() {
            position[i] = pos;
        }
        let mut steps = Vec::with_capacity(order.len());
        for &i in &order {
            check_executable(&dir.tasks[i], &settings[i])?;
            steps.push(Step {
                task: dir.tasks[i].clone(),
                settings: settings[i].clone(),
                deps: deps[i].iter().map(|&j| position[j]).collect(),
            });
        }
        let disabled = (0..dir.tasks.len())
            .filter(|&i| !settings[i].enabled)
            .map(|i| dir.tasks[i].clone())
            .collect();

        let halt = match &dir.halt {
            Some(path) => {
                let file_name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let name = task_name(&file_name);
                let task = TaskFile {
                    file_name,
                    path: path.clone(),
                    name,
                    mode: std::fs::metadata(path).map_or(0, |m| m.permissions().mode()),
                };
                let settings = config.task_settings(&task.name)?;
                check_executable(&task, &settings)?;
                Some(Step {
                    task,
                    settings,
                    deps: Vec::new(),
                })
            }
            None => None,
        };
        Ok(Plan {
            steps,
            disabled,
            halt,
        })
    }
}

fn check_executable(task: &TaskFile, settings: &TaskSettings) -> Result<(), PlanError> {
    if settings.interpreter.is_some() {
        return Ok(());
    }
    if task.mode & 0o111 == 0 {
        return Err(PlanError::NotExecutable {
            path: task.path.clone(),
        });
    }
    Ok(())
}

/// Kahn's algorithm over `nodes`, always taking the smallest ready index next.
///
/// On a cycle, returns the indices of one cycle with its first node repeated at the end.
fn topological_order(nodes: &[usize], deps: &[Vec<usize>]) -> Result<Vec<usize>, Vec<usize>> {
    let size = deps.len();
    let mut in_graph = vec![false; size];
    for &n in nodes {
        in_graph[n] = true;
    }
    let mut missing = vec![0usize; size];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); size];
    for &n in nodes {
        for &d in &deps[n] {
            missing[n] += 1;
            dependents[d].push(n);
        }
    }
    let mut ready: BinaryHeap<Reverse<usize>> = nodes
        .iter()
        .filter(|&&n| missing[n] == 0)
        .map(|&n| Reverse(n))
        .collect();
    let mut order = Vec::with_capacity(nodes.len());
    while let Some(Reverse(n)) = ready.pop() {
        order.push(n);
        for &m in &dependents[n] {
            missing[m] -= 1;
            if missing[m] == 0 {
                ready.push(Reverse(m));
            }
        }
    }
    if order.len() == nodes.len() {
        return Ok(order);
    }
    // Every node left has an unmet dependency that is also left, so walking dependencies
    // from any of them must come back to a node already seen.
    let Some(mut node) = nodes.iter().copied().find(|&n| missing[n] > 0) else {
        return Ok(order);
    };
    let mut path: Vec<usize> = Vec::new();
    loop {
        if let Some(start) = path.iter().position(|&p| p == node) {
            let mut cycle = path[start..].to_vec();
            cycle.push(node);
            return Err(cycle);
        }
        path.push(node);
        node = deps[node]
            .iter()
            .copied()
            .find(|&d| missing[d] > 0)
            .expect("a node left after Kahn's algorithm has a dependency left too");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_dependencies_keeps_file_order() {
        let deps = vec![vec![], vec![], vec![]];
        assert_eq!(topological_order(&[0, 1, 2], &deps), Ok(vec![0, 1, 2]));
    }

    #[test]
    fn dependencies_move_tasks_and_ties_go_to_file_order() {
        // 0 depends on 2; 1 is free; 3 depends on 0.
        let deps = vec![vec![2], vec![], vec![], vec![0]];
        assert_eq!(
            topological_order(&[0, 1, 2, 3], &deps),
            Ok(vec![1, 2, 0, 3])
        );
    }

    #[test]
    fn cycle_is_named_in_dependency_direction() {
        // 0 depends on 1, 1 on 2, 2 on 0; 3 is fine.
        let deps = vec![vec![1], vec![2], vec![0], vec![]];
        let cycle = topological_order(&[0, 1, 2, 3], &deps).expect_err("cycle");
        assert_eq!(cycle.len(), 4);
        assert_eq!(cycle.first(), cycle.last());
        for w in cycle.windows(2) {
            // Each node depends on the one after it.
            assert!(deps[w[0]].contains(&w[1]), "{cycle:?}");
        }
    }
}
