#[sinew::client]
trait Users {
    async fn get_user(&self, id: u64) -> Result<String, sinew::Error>;
}
fn main() {}
