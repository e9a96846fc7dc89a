import Hummingbird
import HummingbirdWebSocket
import Crypto
import GRDB
