"""lyapunov"""
