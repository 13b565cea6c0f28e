//! Which commit to deploy and how to bring the checkout there without losing anyone's work:
//! fast-forward only (or a detached checkout with `--allow-non-ff`), never reset, never stash,
//! and refuse with the exact commands to run when the checkout is not in a state to move.
use crate::git::{GitError, Relation, Repo};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(
        "{repo} has uncommitted changes to tracked files ({files}); clawops never overwrites them. \
         On the VM: `cd {repo} && git status`, then commit them (`git commit -am …`) or discard them \
         (`git checkout -- FILE`), and run the update again"
    )]
    Modified { repo: String, files: String },
    #[error(
        "{repo} and {upstream} have diverged: {local} local commit(s) are not in {upstream}, which has \
         {remote} commit(s) the checkout lacks (was {upstream} force-pushed?). Nothing was changed. \
         Inspect with `cd {repo} && git log --oneline --left-right HEAD...{upstream}`, then either \
         `git rebase {upstream}` to keep the local commits or, if they are not needed, \
         `git reset --hard {upstream}`; then run the update again"
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
         on the branch"
    )]
    LocalCommits {
        repo: String,
        target: String,
        local: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceAction {
    /// HEAD already is the target.
    None,
    FastForward,
    /// `--allow-non-ff`: check the target out detached.
    Detach,
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
    allow_non_ff: bool,
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
        _ if allow_non_ff => SourceAction::Detach,
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

/// Carries out the plan.
/// Puts the checkout back where `plan` found it, after [`apply`], when the target is refused.
pub async fn undo(repo: &Repo, plan: &SourcePlan) -> Result<(), SourceError> {
    match (plan.action, &plan.branch) {
        (SourceAction::None, _) => Ok(()),
        (SourceAction::FastForward, _) => Ok(repo.reset_keep(&plan.head).await?),
        (SourceAction::Detach, Some(branch)) => Ok(repo.checkout_branch(branch).await?),
        (SourceAction::Detach, None) => Ok(repo.checkout_detached(&plan.head).await?),
    }
}

pub async fn apply(repo: &Repo, plan: &SourcePlan) -> Result<(), SourceError> {
    match plan.action {
        SourceAction::None => Ok(()),
        SourceAction::FastForward => Ok(repo.fast_forward(&plan.target).await?),
        SourceAction::Detach => Ok(repo.checkout_detached(&plan.target).await?),
    }
}
