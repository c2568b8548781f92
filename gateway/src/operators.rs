//! The operators roster (`server.operators_file`, `config/operators.toml`): the people who use
//! the admin API, each with a role and an argon2 hash of their token, so every admin call is
//! made by someone the audit log can name. `server.admin_token` stays as a break-glass token;
//! every use of it is audited ([`crate::admin::authorize`]).

use std::path::Path;

use serde::Deserialize;

/// What an operator may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The supervisor view and the reports.
    Supervisor,
    /// Reads of stored conversations, exports, deletions on request, the audit log, reports.
    Auditor,
    /// Knowledge-base reloads, edits, missed questions and answer figures.
    Editor,
    /// Everything.
    Admin,
}

/// What an admin call needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Only signing in (`POST /admin/otp-session`): every role.
    SignIn,
    ReloadKb,
    /// The knowledge-base tools (`/admin/kb/*` besides reload): edits, misses, figures.
    EditKb,
    Supervise,
    Reports,
    ReadRecords,
    ReadAudit,
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::SignIn => "sign_in",
            Permission::ReloadKb => "reload_kb",
            Permission::EditKb => "edit_kb",
            Permission::Supervise => "supervise",
            Permission::Reports => "reports",
            Permission::ReadRecords => "read_records",
            Permission::ReadAudit => "read_audit",
        }
    }
}

impl Role {
    pub fn allows(self, p: Permission) -> bool {
        use Permission::*;
        match self {
            _ if p == SignIn => true,
            Role::Admin => true,
            Role::Supervisor => matches!(p, Supervise | Reports),
            Role::Auditor => matches!(p, ReadRecords | ReadAudit | Reports),
            Role::Editor => matches!(p, ReloadKb | EditKb),
        }
    }
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Operator {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub token_hash: String,
    /// Two-step sign-in: the secret sealed with the store key (`kefu-gateway totp-enroll ID`).
    #[serde(default)]
    pub totp: Option<String>,
    /// `totp`, opened at load.
    #[serde(skip)]
    pub otp: Option<crate::signin::TotpSecret>,
}

impl std::fmt::Debug for Operator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Operator({}, {:?})", self.id, self.role)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    operator: Vec<Operator>,
}

/// The operators, loaded once at start.
#[derive(Debug, Default)]
pub struct Operators {
    list: Vec<Operator>,
}

/// `server.operators_file` as shipped.
const DEFAULT_FILE: &str = "config/operators.toml";

/// Most operators a roster may hold.
const MAX_OPERATORS: usize = 1000;

impl Operators {
    /// Reads `path` ("" : no operators, only the break-glass token); `keys` opens enrolled
    /// operators' `totp`.
    pub fn load(path: &Path, keys: &crate::signin::RosterKeys) -> Result<Self, String> {
        if path.as_os_str().is_empty() {
            return Ok(Self::default());
        }
        let given = path;
        let path = crate::files::resolve_path(path);
        if !path.exists() && given == Path::new(DEFAULT_FILE) {
            // The default roster is optional (a binary run away from its source tree): only
            // the break-glass token then opens the admin API. A roster named on purpose must
            // exist.
            tracing::warn!(
                "no operators roster at the default path; admin API by break-glass only"
            );
            return Ok(Self::default());
        }
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{shown}: {e}"))?;
        let mut file: File = toml::from_str(&text).map_err(|e| format!("{shown}: {e}"))?;
        if file.operator.len() > MAX_OPERATORS {
            return Err(format!("{shown}: more than {MAX_OPERATORS} operators"));
        }
        for (i, op) in file.operator.iter().enumerate() {
            let id_ok = !op.id.is_empty()
                && op.id.len() <= 32
                && op
                    .id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !id_ok {
                return Err(format!(
                    "{shown}: operator[{i}].id: 1-32 letters, digits, `_` or `-`"
                ));
            }
            if argon2::PasswordHash::new(&op.token_hash).is_err() {
                return Err(format!(
                    "{shown}: operator[{i}].token_hash is not an argon2 hash (make one with `kefu-gateway hash-token TOKEN`)"
                ));
            }
            if file.operator[..i].iter().any(|o| o.id == op.id) {
                return Err(format!("{shown}: operator id `{}` appears twice", op.id));
            }
        }
        for (i, op) in file.operator.iter_mut().enumerate() {
            if let Some(sealed) = &op.totp {
                let opened = keys.open_totp(&op.id, sealed);
                op.otp = Some(opened.map_err(|e| format!("{shown}: operator[{i}]: {e}"))?);
            }
        }
        Ok(Self {
            list: file.operator,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The operator a token `ID.SECRET` belongs to, checked against that operator's hash
    /// only, on the blocking pool (argon2 is slow by design).
    pub async fn authenticate(&self, token: &str) -> Option<Operator> {
        let (id, _) = token.split_once('.')?;
        let op = self.list.iter().find(|o| o.id == id)?.clone();
        let token = token.to_string();
        tokio::task::spawn_blocking(move || {
            crate::roster::verify_token(&token, &op.token_hash).then_some(op)
        })
        .await
        .ok()
        .flatten()
    }
}
