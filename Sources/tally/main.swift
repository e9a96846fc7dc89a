import TallyServer
import ArgumentParser
print("x")
