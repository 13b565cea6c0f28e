//! Which commit to deploy and how to bring the checkout there without losing anyone's work:
//! fast-forward only (or a detached checkout with `--allow-non-ff`, or the local commits
//! replayed onto the target with `--rebase`), never reset, never stash, and refuse with the
//! exact commands to run when the checkout is not in a state to move.
use crate::git::{GitError, Rebased, Relation, Repo};

/// Where local customizations belong instead of uncommitted edits, for the refusals.
const CUSTOMIZE: &str = "To keep local changes across updates: commit them and run \
    `clawops update --rebase` (or set `[app] rebase = true` in agent.toml) to replay them onto \
    each new upstream commit; put extra binaries in a Dockerfile outside the checkout built \
    FROM the image (`[build] overlay` in agent.toml); put compose changes in \
    docker-compose.override.yml";

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(
        "{repo} has uncommitted changes to tracked files ({files}); clawops never overwrites them. \
         On the VM: `cd {repo} && git status`, then commit them (`git commit -am …`) or discard them \
         (`git checkout -- FILE`), and run the update again. {CUSTOMIZE}"
    )]
    Modified { repo: String, files: String },
    #[error(
        "{repo} and {upstream} have diverged: {local} local commit(s) are not in {upstream}, which has \
         {remote} commit(s) the checkout lacks (was {upstream} force-pushed?). Nothing was changed. \
         Inspect with `cd {repo} && git log --oneline --left-right HEAD...{upstream}`, then either \
         `git rebase {upstream}` to keep the local commits or, if they are not needed, \
         `git reset --hard {upstream}`; then run the update again, or run \
         `clawops update --rebase` to replay the local commits onto {upstream}. {CUSTOMIZE}"
    )]
    Diverged {
        repo: String,
        upstream: String,
        local: u32,
        remote: u32,
    },
    #[error(
        "{repo} has {local} local commit(s) that {target} does not contain; a fast-forward cannot \
         deploy {target}. Push them (`cd {repo} && git push`) or deploy the commit you mean with \
         `clawops update --ref SHA`; `--allow-non-ff` checks {target} out detached, keeping your commits \
         on the branch; `clawops update --rebase` deploys the local commits on top of {target}. \
         {CUSTOMIZE}"
    )]
    LocalCommits {
        repo: String,
        target: String,
        local: u32,
    },
    #[error(
        "replaying the local commits of {repo} onto {target} conflicts in {}; the rebase was \
         aborted and the checkout is as it was. Rebase by hand (`cd {repo} && git rebase {target}`), \
         resolve, and run the update again",
        files.join(", ")
    )]
    RebaseConflict {
        repo: String,
        target: String,
        files: Vec<String>,
    },
    #[error(
        "{repo}: the rebase onto {target} was aborted but the checkout differs from before \
         (HEAD, index or working tree); inspect it with `cd {repo} && git status && git reflog`"
    )]
    RebaseNotRestored { repo: String, target: String },
    #[error(
        "{repo}: a rebase is in progress (or HEAD is detached), so clawops will not rebase; \
         finish it (`git rebase --continue`) or abort it (`git rebase --abort`), check the \
         branch out, and run the update again"
    )]
    RebaseBlocked { repo: String },
}

/// How the checkout may move to the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Moves {
    /// Fast-forward only.
    #[default]
    FastForward,
    /// `--allow-non-ff`: anything else is checked out detached.
    Detach,
    /// `--rebase`: local commits are replayed onto the target.
    Rebase,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceAction {
    /// HEAD already is the target.
    None,
    FastForward,
    /// `--allow-non-ff`: check the target out detached.
    Detach,
    /// `--rebase`: replay the branch's local commits onto the target.
    Rebase,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePlan {
    pub head: String,
    /// The branch checked out before the move (none when HEAD was detached).
    pub branch: Option<String>,
    pub target: String,
    pub action: SourceAction,
}

/// Decides how to reach `target` from the checkout's HEAD; fails (changing nothing) when the
/// move could lose work.
pub async fn plan(
    repo: &Repo,
    target: &str,
    upstream: &str,
    moves: Moves,
) -> Result<SourcePlan, SourceError> {
    let head = repo.head().await?;
    let shown = repo.path().display().to_string();
    let relation = repo.relation(&head, target).await?;
    if relation != Relation::Same {
        let modified = repo.modified_tracked_files().await?;
        if !modified.is_empty() {
            let mut files = modified
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ");
            if modified.len() > 5 {
                files.push_str(&format!(" and {} more", modified.len() - 5));
            }
            return Err(SourceError::Modified { repo: shown, files });
        }
    }
    let action = match relation {
        Relation::Same => SourceAction::None,
        Relation::Behind => SourceAction::FastForward,
        _ if moves == Moves::Detach => SourceAction::Detach,
        _ if moves == Moves::Rebase => SourceAction::Rebase,
        Relation::Ahead => {
            let (local, _) = repo.divergence(&head, target).await?;
            return Err(SourceError::LocalCommits {
                repo: shown,
                target: target[..target.len().min(12)].to_owned(),
                local,
            });
        }
        Relation::Diverged => {
            let (local, remote) = repo.divergence(&head, target).await?;
            return Err(SourceError::Diverged {
                repo: shown,
                upstream: upstream.to_owned(),
                local,
                remote,
            });
        }
    };
    Ok(SourcePlan {
        branch: repo.current_branch().await?,
        head,
        target: target.to_owned(),
        action,
    })
}

/// With `--rebase`, the commit to deploy: the checkout's HEAD when it already contains `fetched`
/// (its local commits sit on top of it, e.g. after an earlier rebase), else `fetched`. So a
/// second update with nothing new upstream deploys the same sha (a no-op) instead of
/// rebasing again.
pub async fn carried_forward(repo: &Repo, fetched: String) -> Result<String, SourceError> {
    let head = repo.head().await?;
    Ok(match repo.relation(&head, &fetched).await? {
        Relation::Ahead => head,
        _ => fetched,
    })
}

/// Puts the checkout back where `plan` found it, after [`apply`], when the target is refused.
pub async fn undo(repo: &Repo, plan: &SourcePlan) -> Result<(), SourceError> {
    match (plan.action, &plan.branch) {
        (SourceAction::None, _) => Ok(()),
        (SourceAction::FastForward | SourceAction::Rebase, _) => {
            Ok(repo.reset_keep(&plan.head).await?)
        }
        (SourceAction::Detach, Some(branch)) => Ok(repo.checkout_branch(branch).await?),
        (SourceAction::Detach, None) => Ok(repo.checkout_detached(&plan.head).await?),
    }
}

/// Carries out the plan; the sha now checked out, which is the one to deploy (after a rebase,
/// the rebased HEAD rather than the target).
pub async fn apply(repo: &Repo, plan: &SourcePlan) -> Result<String, SourceError> {
    match plan.action {
        SourceAction::None => {}
        SourceAction::FastForward => repo.fast_forward(&plan.target).await?,
        SourceAction::Detach => repo.checkout_detached(&plan.target).await?,
        SourceAction::Rebase => rebase(repo, plan).await?,
    }
    Ok(repo.head().await?)
}

/// Rebases the branch onto the target (in a scratch worktree) and moves the branch there; on a
/// conflict, checks that the checkout is exactly as it was and names the conflicting files.
async fn rebase(repo: &Repo, plan: &SourcePlan) -> Result<(), SourceError> {
    let shown = repo.path().display().to_string();
    if plan.branch.is_none() || repo.rebase_in_progress().await? {
        return Err(SourceError::RebaseBlocked { repo: shown });
    }
    let before = repo.status_v2().await?;
    let files = match repo.rebase(&plan.target).await? {
        // The checkout was clean (plan refuses otherwise): the branch moves, files follow.
        Rebased::Done(sha) => return Ok(repo.reset_keep(&sha).await?),
        Rebased::Conflict(files) => files,
    };
    let target = plan.target[..plan.target.len().min(12)].to_owned();
    let restored = repo.head().await? == plan.head
        && repo.current_branch().await? == plan.branch
        && repo.status_v2().await? == before;
    if !restored {
        return Err(SourceError::RebaseNotRestored {
            repo: shown,
            target,
        });
    }
    Err(SourceError::RebaseConflict {
        repo: shown,
        target,
        files,
    })
}
