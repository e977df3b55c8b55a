//! `sluice user …`: create, list, disable, reset a password — for the first superuser's
//! colleagues, and for recovering an instance whose admins cannot sign in.

use std::io::BufRead;

use anyhow::{bail, Context};
use sluice_admin::accounts;
use sluice_core::source_auth::hash_password;
use sluice_store::{NewUser, PasswordState, Store, User, UserPatch};

use crate::cli::UserCommand;

/// The audit actor of changes made from the command line.
const ACTOR: &str = "cli";

/// `sluice user …`
pub async fn user(cmd: UserCommand) -> anyhow::Result<()> {
    match cmd {
        UserCommand::Create {
            ledger,
            username,
            display_name,
            superuser,
            password_stdin,
        } => {
            if let Some(p) = accounts::username_problem(&username) {
                bail!("username {p}");
            }
            let (password, state) = if password_stdin {
                let mut line = String::new();
                std::io::stdin()
                    .lock()
                    .read_line(&mut line)
                    .context("reading the password from standard input")?;
                let pw = line.trim_end_matches(['\r', '\n']).to_string();
                if let Some(p) = accounts::password_problem(&pw) {
                    bail!("password {p}");
                }
                (pw, PasswordState::Set)
            } else {
                (accounts::generate_password(), PasswordState::OneTime)
            };
            let store = ledger.open().await?;
            store.ensure_default_project().await?;
            let user = store
                .create_user(
                    &NewUser {
                        username,
                        display_name: display_name.unwrap_or_default(),
                        password_hash: hash_password(&password),
                        password_state: state,
                        superuser,
                    },
                    ACTOR,
                )
                .await?;
            store.close().await;
            println!("created user {:?} ({})", user.username, user.id);
            if state == PasswordState::OneTime {
                println!("one-time password, shown only once, to be changed at first sign-in:");
                println!("{password}");
            }
            Ok(())
        }
        UserCommand::List { ledger } => {
            let store = ledger.open().await?;
            let mut after = None;
            loop {
                let page = store.list_users(after, 500).await?;
                for u in &page {
                    println!("{}", list_line(u));
                }
                match page.last() {
                    Some(u) if page.len() == 500 => after = Some(u.id),
                    _ => break,
                }
            }
            store.close().await;
            Ok(())
        }
        UserCommand::Disable { ledger, username } => {
            let store = ledger.open().await?;
            let user = find(&store, &username).await?;
            let patch = UserPatch {
                disabled: Some(true),
                ..UserPatch::default()
            };
            store.update_user(user.id, &patch, ACTOR).await?;
            store.close().await;
            println!("disabled user {:?}", user.username);
            Ok(())
        }
        UserCommand::ResetPassword { ledger, username } => {
            let store = ledger.open().await?;
            let user = find(&store, &username).await?;
            let password = accounts::generate_password();
            let patch = UserPatch {
                password: Some((hash_password(&password), PasswordState::OneTime)),
                disabled: Some(false),
                ..UserPatch::default()
            };
            store.update_user(user.id, &patch, ACTOR).await?;
            store.close().await;
            println!(
                "new one-time password of {:?}, shown only once, to be changed at first sign-in:",
                user.username
            );
            println!("{password}");
            Ok(())
        }
    }
}

async fn find(store: &Store, username: &str) -> anyhow::Result<User> {
    match store.user_by_name(username).await? {
        Some(r) => Ok(r.user),
        None => bail!("no user named {username:?}"),
    }
}

fn list_line(u: &User) -> String {
    let flag = |b: bool, word: &'static str| if b { word } else { "-" };
    format!(
        "{}\t{}\t{}\t{}\t{}",
        u.id,
        u.username,
        flag(u.superuser, "superuser"),
        flag(u.disabled, "disabled"),
        u.last_login_at.map_or_else(
            || "never signed in".to_string(),
            sluice_core::clock::to_rfc3339
        )
    )
}
