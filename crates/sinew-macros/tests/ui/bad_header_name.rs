#[sinew::client]
trait Users {
    #[get("/users")]
    async fn list(&self, #[header("X Tenant")] tenant: &str) -> Result<(), sinew::Error>;
}
fn main() {}
