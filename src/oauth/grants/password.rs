//! RFC 6749 §4.3, for clients that list the `password` grant (others get
//! `unauthorized_client` from the registry check). The user signs in with a
//! username or email and the password set with `PATCH /api/v1/user/`.
//! The check and its limits are the account service's (`accounts::passwords`):
//! tries are counted per account and per source IP before the hash is
//! compared, answering 429 with `Retry-After` once over `passwords.*`.

use super::{Grant, GrantFuture, GrantRequest};
use crate::accounts::passwords;
use crate::oauth::issue::{self, UserTokens};
use crate::oauth::policy::{self, Holder};
use crate::params::client_ip;
use crate::store::now;

pub const GRANT: Grant = Grant {
    name: "password",
    aliases: &[],
    handle,
};

fn handle(req: GrantRequest) -> GrantFuture {
    Box::pin(async move {
        let (state, client, params) = (&req.state, &req.client, &req.params);
        let login = params.required("username")?;
        let password = params.required("password")?;
        policy::precheck(client, params.get("scope"))?;
        let audience = policy::audience(client, &params.all("resource"))?;
        let ip = client_ip(&req.http);
        let user = passwords::check(state, &client.id, login, password, ip.as_deref()).await?;
        let scope = policy::grant_scope(client, params.get("scope"), Holder::User(&user))?;
        issue::issue(
            state,
            UserTokens {
                client,
                user: &user,
                scope: &scope,
                amr: vec!["pwd".to_string()],
                auth_time: now(),
                nonce: None,
                family: None,
                new_family: None,
                ip: ip.as_deref(),
                grant: "password",
                audience,
                session_id: None,
            },
        )
        .await
    })
}
