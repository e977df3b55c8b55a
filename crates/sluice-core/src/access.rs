//! Who may do what: roles, the rights an API caller holds, and the one decision every route
//! asks ("may this caller do this on this project?"). Pure rules; the admin layer resolves a
//! caller's principal from its token or session and maps a denial to HTTP.

use std::collections::HashMap;

use serde::Serialize;
use uuid::Uuid;

/// A role, lowest first: each role may do everything the ones before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything in a project, history and bodies included.
    Viewer,
    /// Viewer plus channels.
    Editor,
    /// Editor plus credentials, auth methods and members.
    Admin,
    /// Everything on every project, plus users, projects and settings. Only tokens and users
    /// hold it; as a token's cap it narrows nothing.
    Superuser,
}

impl Role {
    /// The roles a project member may hold.
    pub const MEMBER_ROLES: [Role; 3] = [Role::Viewer, Role::Editor, Role::Admin];

    /// Storage and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Superuser => "superuser",
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Admin => "admin",
        }
    }

    /// Parses a storage or wire name.
    pub fn parse(s: &str) -> Option<Self> {
        [Role::Superuser, Role::Viewer, Role::Editor, Role::Admin]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

/// What an action needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Right {
    /// Read a project's configuration, history, audit and events.
    Read,
    /// Create, change and delete channels.
    EditChannels,
    /// Manage credentials, auth methods and members.
    ManageProject,
    /// Manage users, projects and instance settings.
    ManageInstance,
}

impl Right {
    /// The project role this right needs (`Superuser` for instance rights).
    pub fn role(self) -> Role {
        match self {
            Right::Read => Role::Viewer,
            Right::EditChannels => Role::Editor,
            Right::ManageProject => Role::Admin,
            Right::ManageInstance => Role::Superuser,
        }
    }

    /// How a 403 names the missing right.
    pub fn describe(self) -> &'static str {
        match self {
            Right::Read => "viewer role in the project",
            Right::EditChannels => "editor role in the project",
            Right::ManageProject => "admin role in the project",
            Right::ManageInstance => "superuser",
        }
    }
}

/// Why an action is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// The caller cannot see the project: answer as if the resource did not exist.
    Hidden,
    /// The caller sees the project but lacks this right.
    Missing(Right),
}

/// Which projects a principal holds roles in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProjectRoles {
    /// The same role in every project (superusers, instance tokens).
    All(Role),
    /// A role in each listed project, none elsewhere.
    Each(HashMap<Uuid, Role>),
}

/// The rights of one authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The audit actor: `user:<name>` or `token:<name>`.
    pub actor: String,
    /// The user behind the call (none for an instance token).
    pub user_id: Option<Uuid>,
    /// Instance rights (users, projects, settings).
    pub superuser: bool,
    /// Project rights.
    pub projects: ProjectRoles,
}

/// How a token narrows its owner's rights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenScope {
    /// Only this project.
    pub project: Option<Uuid>,
    /// At most this role (`Superuser` caps nothing).
    pub cap: Role,
}

impl Principal {
    /// The rights of a user: superuser, or a role per project they are a member of.
    pub fn user(
        actor: String,
        user_id: Uuid,
        superuser: bool,
        memberships: HashMap<Uuid, Role>,
    ) -> Self {
        let projects = if superuser {
            ProjectRoles::All(Role::Admin)
        } else {
            ProjectRoles::Each(memberships)
        };
        Self {
            actor,
            user_id: Some(user_id),
            superuser,
            projects,
        }
    }

    /// The rights of an instance token (no user): its role on every project.
    pub fn instance_token(actor: String, role: Role) -> Self {
        Self {
            actor,
            user_id: None,
            superuser: role == Role::Superuser,
            projects: ProjectRoles::All(role.min(Role::Admin)),
        }
    }

    /// These rights narrowed by a token's scope: never more than the owner holds.
    pub fn narrowed(mut self, scope: TokenScope) -> Self {
        let narrowing = scope.project.is_some() || scope.cap < Role::Superuser;
        if narrowing {
            self.superuser = false;
        }
        let cap = scope.cap.min(Role::Admin);
        let capped = |r: Role| r.min(cap);
        self.projects = match (self.projects, scope.project) {
            (ProjectRoles::All(r), None) => ProjectRoles::All(capped(r)),
            (ProjectRoles::All(r), Some(p)) => ProjectRoles::Each(HashMap::from([(p, capped(r))])),
            (ProjectRoles::Each(m), p) => ProjectRoles::Each(
                m.into_iter()
                    .filter(|(id, _)| p.is_none_or(|p| p == *id))
                    .map(|(id, r)| (id, capped(r)))
                    .collect(),
            ),
        };
        self
    }

    /// The caller's role in `project`, if it may see it at all.
    pub fn role_in(&self, project: Uuid) -> Option<Role> {
        match &self.projects {
            ProjectRoles::All(r) => Some(*r),
            ProjectRoles::Each(m) => m.get(&project).copied(),
        }
    }

    /// The one decision: may this caller exercise `right`, on `project` when the action
    /// concerns one? Instance rights need the superuser; a project the caller holds no role in
    /// is hidden; a role too low is a missing right.
    pub fn check(&self, right: Right, project: Option<Uuid>) -> Result<(), Denial> {
        if right == Right::ManageInstance {
            return if self.superuser {
                Ok(())
            } else {
                Err(Denial::Missing(right))
            };
        }
        let Some(project) = project else {
            // An action on no project in particular (e.g. validating a URL) needs the role in
            // some project.
            return if self.highest_role().is_some_and(|r| r >= right.role()) {
                Ok(())
            } else {
                Err(Denial::Missing(right))
            };
        };
        match self.role_in(project) {
            None => Err(Denial::Hidden),
            Some(r) if r >= right.role() => Ok(()),
            Some(_) => Err(Denial::Missing(right)),
        }
    }

    /// The projects whose contents the caller may read: `None` for every project.
    pub fn readable_projects(&self) -> Option<Vec<Uuid>> {
        match &self.projects {
            ProjectRoles::All(_) => None,
            ProjectRoles::Each(m) => {
                let mut v: Vec<Uuid> = m.keys().copied().collect();
                v.sort();
                Some(v)
            }
        }
    }

    /// The caller's highest project role anywhere.
    fn highest_role(&self) -> Option<Role> {
        match &self.projects {
            ProjectRoles::All(r) => Some(*r),
            ProjectRoles::Each(m) => m.values().copied().max(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(p: Uuid, r: Role) -> Principal {
        Principal::user("user:a".into(), Uuid::nil(), false, HashMap::from([(p, r)]))
    }

    #[test]
    fn roles_grant_their_rights_and_hide_other_projects() {
        let (p, q) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let viewer = member(p, Role::Viewer);
        assert_eq!(viewer.check(Right::Read, Some(p)), Ok(()));
        assert_eq!(
            viewer.check(Right::EditChannels, Some(p)),
            Err(Denial::Missing(Right::EditChannels))
        );
        assert_eq!(viewer.check(Right::Read, Some(q)), Err(Denial::Hidden));
        let admin = member(p, Role::Admin);
        assert_eq!(admin.check(Right::ManageProject, Some(p)), Ok(()));
        assert_eq!(
            admin.check(Right::ManageInstance, None),
            Err(Denial::Missing(Right::ManageInstance))
        );
        assert_eq!(viewer.readable_projects(), Some(vec![p]));
    }

    #[test]
    fn a_token_never_holds_more_than_its_owner() {
        let (p, q) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let su = Principal::user("user:root".into(), Uuid::nil(), true, HashMap::new());
        let narrowed = su.clone().narrowed(TokenScope {
            project: Some(p),
            cap: Role::Viewer,
        });
        assert!(!narrowed.superuser);
        assert_eq!(narrowed.check(Right::Read, Some(p)), Ok(()));
        assert_eq!(narrowed.check(Right::Read, Some(q)), Err(Denial::Hidden));
        assert_eq!(
            narrowed.check(Right::EditChannels, Some(p)),
            Err(Denial::Missing(Right::EditChannels))
        );
        let unnarrowed = su.narrowed(TokenScope {
            project: None,
            cap: Role::Superuser,
        });
        assert!(unnarrowed.superuser);
        // A viewer's token capped at admin is still a viewer.
        let v = member(p, Role::Viewer).narrowed(TokenScope {
            project: None,
            cap: Role::Admin,
        });
        assert_eq!(v.role_in(p), Some(Role::Viewer));
    }

    #[test]
    fn instance_tokens_keep_their_role_everywhere() {
        let t = Principal::instance_token("token:ci".into(), Role::Editor);
        assert!(!t.superuser);
        assert_eq!(
            t.check(Right::EditChannels, Some(Uuid::from_u128(9))),
            Ok(())
        );
        assert_eq!(t.readable_projects(), None);
        assert!(Principal::instance_token("token:root".into(), Role::Superuser).superuser);
    }
}
