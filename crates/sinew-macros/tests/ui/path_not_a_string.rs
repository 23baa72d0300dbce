#[sinew::client]
trait Users {
    #[get(users)]
    async fn get_user(&self) -> Result<String, sinew::Error>;
}
fn main() {}
