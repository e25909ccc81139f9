"""The web chat widget (talks to Rasa's socket.io channel) and the agent desk (hand-overs and the
risk API's review queue), served by one small FastAPI app."""
